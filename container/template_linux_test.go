package container_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// tapNetwork plugs every VM into a tap of its own in a network namespace
// the test made, with its own MAC and address: enough for the guest to
// configure eth0, which it finds by MAC.
type tapNetwork struct {
	noNetwork
	ns string
	n  atomic.Int32
}

func (tn *tapNetwork) Attach(_ context.Context, id string, _ network.AttachOptions) (*network.Endpoint, error) {
	i := tn.n.Add(1)
	tap := fmt.Sprintf("vkavtpl%d", i)
	if out, err := exec.Command("ip", "-n", tn.ns, "tuntap", "add", "dev", tap, "mode", "tap").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("add %s: %v: %s", tap, err, out)
	}
	// The host end answers on the link: a frame to the guest's MAC
	// reaches it only if the device's filter has that MAC too.
	for _, args := range [][]string{{"addr", "add", fmt.Sprintf("10.77.%d.254/24", i), "dev", tap}, {"link", "set", tap, "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", tn.ns}, args...)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	mac := fmt.Sprintf("02:76:6b:61:74:%02x", i)
	return &network.Endpoint{
		ID:    id,
		NIC:   vm.NIC{MAC: mac, Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: tap, Netns: "/run/netns/" + tn.ns}},
		Guest: network.GuestConfig{MAC: mac, Address: netip.MustParsePrefix(fmt.Sprintf("10.77.%d.1/24", i)), MTU: 1500},
	}, nil
}

// Two containers of one shape: the first builds the template, both resume
// it. Each guest drives its own NIC (its MAC), its own disks (the sizes
// are read after the resume) and its own random numbers.
func TestVMsResumeFromATemplate(t *testing.T) {
	testenv.NeedsRoot(t, "a network namespace with taps")
	ns := fmt.Sprintf("vkavtpl%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	var dir string
	rt := newRuntime(t, func(c *container.Config) {
		d := qemu.New(qemu.Options{}) // TCG, as the shims' (runShim)
		dir = filepath.Join(c.Root, "templates")
		var err error
		if c.Templates, err = vmtemplate.ForQEMU(context.Background(), dir, d, "amd64", nil); err != nil {
			t.Fatal(err)
		}
		c.Network = &tapNetwork{ns: ns}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	type seen struct{ mac, random, cmdline string }
	var got []seen
	for i := range 2 {
		sb, err := rt.Create(ctx, container.VMConfig{Name: fmt.Sprintf("tpl%d", i), ImageRef: fixtures.busybox})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			defer dcancel()
			_ = sb.Delete(dctx)
		})
		script := "cat /sys/class/net/eth0/address; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/cmdline; " +
			"df -k / | awk 'NR==2{print $2}'; echo kept > /written && cat /written; " +
			fmt.Sprintf("ping -c 1 -W 10 10.77.%d.254 >/dev/null && echo reached", i+1)
		var out bytes.Buffer
		st, err := sb.Exec(ctx, container.ProcessConfig{ID: "look", Args: []string{"sh", "-c", script}}, container.IO{Stdout: &out, Stderr: &out})
		if err != nil || st.Code != 0 {
			t.Fatalf("container %d: exec: %v (exit %d): %s", i, err, st.Code, out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 6 {
			t.Fatalf("container %d said %q", i, out.String())
		}
		s := seen{mac: lines[0], random: lines[1], cmdline: lines[2]}
		t.Logf("container %d: %+v, root fs %s KiB", i, s, lines[3])
		if want := fmt.Sprintf("02:76:6b:61:74:%02x", i+1); s.mac != want {
			t.Errorf("container %d: eth0 has MAC %s, want its own %s", i, s.mac, want)
		}
		// The template's command line is in the resumed guest's memory;
		// a booted guest would have the container VM's own.
		if !strings.Contains(s.cmdline, vmtemplate.TemplateCmdline) {
			t.Errorf("container %d booted instead of resuming the template: /proc/cmdline %q", i, s.cmdline)
		}
		// The template saw a 1 MiB placeholder; the writable layer is
		// container.DefaultScratchBytes.
		if kib, _ := strconv.Atoi(lines[3]); kib < 1<<20 {
			t.Errorf("container %d: root filesystem of %s KiB, want the 10 GiB writable layer's", i, lines[3])
		}
		if lines[4] != "kept" {
			t.Errorf("container %d: wrote and read back %q", i, lines[4])
		}
		if lines[5] != "reached" {
			t.Errorf("container %d: the host end of its link did not answer a ping: %q", i, lines[5])
		}
		got = append(got, s)
	}
	if got[0].random == got[1].random {
		t.Errorf("both containers resumed from one template read the same /dev/urandom bytes %s: the CRNG was not reseeded", got[0].random)
	}
	states, _ := filepath.Glob(filepath.Join(dir, "*.state"))
	if len(states) != 1 {
		t.Fatalf("templates %v, want one for the one shape", states)
	}

	// A template that no longer loads (here: cut short) fails the create
	// that resumes it with the reason and is discarded; the next create
	// of the shape builds a new one and runs.
	if err := os.Truncate(states[0], 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Create(ctx, container.VMConfig{Name: "tplbad", ImageRef: fixtures.busybox}); err == nil || !strings.Contains(err.Error(), "(discarded)") {
		t.Fatalf("create from a broken template: %v, want a failure that discards it", err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if _, err := os.Stat(states[0]); !os.IsNotExist(err) {
		t.Fatalf("the broken template is still there (%v)", err)
	}
	sb, err := rt.Create(ctx, container.VMConfig{Name: "tplagain", ImageRef: fixtures.busybox})
	if err != nil {
		t.Fatalf("create after the discard: %v", err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		_ = sb.Delete(dctx)
	})
	if _, err := os.Stat(states[0]); err != nil {
		t.Fatalf("no new template after the discard: %v", err)
	}
}
