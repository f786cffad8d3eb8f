package vmtest

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/security"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/vm"
)

// suidBusyboxLayer holds /bin/busybox-suid, busybox setuid root.
func suidBusyboxLayer(ctx context.Context) (v1.Layer, error) {
	p, err := imagetest.FindBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return nil, err
	}
	bb, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return imagetest.Layer([]imagetest.File{{Path: "bin/busybox-suid", Mode: 0o755 | fs.ModeSetuid, Data: bb}})
}

// TestContainerIsolation: the container inside its VM is a container. A
// root container with the runtime's defaults cannot see the agent (PID 1
// of the VM), its console ports, descriptors or mounts, has containerd's
// default capabilities and cannot load a module; a container with every
// capability dropped, no_new_privs, a read-only root and the runtime's
// default seccomp profile cannot gain privileges through a setuid binary,
// write to /, create a user namespace or a device node.
func TestContainerIsolation(t *testing.T) {
	host := t.TempDir()
	v := bootVM(t, vmOptions{shares: []vm.Share{{Tag: "ed", HostPath: host}}})
	emptyDir := &api.Mount{Type: "share", Source: "ed", Destination: "/ed"}
	no := false
	v.create(t, &api.CreateContainerRequest{ContainerId: "c", Hostname: "pod-a", Mounts: []*api.Mount{emptyDir},
		Security: &api.Security{Capabilities: security.DefaultCapabilities, NoNewPrivileges: &no}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := v.agent.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: "c", ProcessId: "main", Args: []string{"sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.agent.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "c", ProcessId: "main"}); err != nil {
		t.Fatal(err)
	}

	t.Run("root with the defaults", func(t *testing.T) {
		for _, c := range []struct{ script, want string }{
			{`tr '\0' ' ' </proc/1/cmdline`, "sleep 1000 "}, // PID 1 is the container's
			// the agent is nowhere ("/init" in the VM; the pattern does not match grep itself)
			{`for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <$f; echo; done | grep -c '^/init\|[v]k-applevm' || true`, "0\n"},
			{`ls /dev | grep -cE '^(vport|hvc|console|vd)' || true`, "0\n"},                        // nor its ports and disks
			{`ls /proc/self/fd | tr '\n' ' '`, "0 1 2 3 "},                                         // nor its descriptors
			{`awk '{print $5}' /proc/self/mountinfo | grep -cE '^/(run|lib|init)' || true`, "0\n"}, // nor its mounts (by mount point: overlay options name its paths, as under Docker)
			{`grep CapEff /proc/self/status`, "CapEff:\t00000000a80425fb\n"},
			{`hostname`, "pod-a\n"},
			{`busybox insmod /bin/busybox 2>&1 || true`, "insmod: can't insert '/bin/busybox': Operation not permitted\n"},
			{`busybox unshare -U true && echo userns-allowed`, "userns-allowed\n"}, // no seccomp here
		} {
			if out := v.mustSh(t, c.script); out != c.want {
				t.Errorf("%s: %q, want %q", c.script, out, c.want)
			}
		}
		// With CAP_MKNOD it can make nodes for the agent's console ports
		// and the VM's disks (sysfs names their numbers), but not open
		// them: the device cgroup.
		out := v.mustSh(t, `for f in /sys/class/virtio-ports/*/dev /sys/block/vd*/dev; do IFS=: read ma mi <$f;
t=c; case $f in /sys/block/*) t=b;; esac; mknod /tmp/n$ma-$mi $t $ma $mi && head -c1 /tmp/n$ma-$mi 2>&1 | grep -c 'Operation not permitted'; done | sort | uniq -c`)
		if n := strings.Fields(out); len(n) != 2 || n[1] != "1" || n[0] != "4" {
			t.Errorf("opening nodes of the agent's two ports and the two disks: %q, want the four refused", out)
		}
		// Through the setuid binary a user becomes root: without
		// no_new_privs, setuid works (the control for the locked case).
		if out, errOut, _ := v.shIn(t, "c", "1000", `/bin/busybox-suid stat -c %u /proc/self/status`); out != "0\n" {
			t.Errorf("setuid without no_new_privs: %q %q, want 0 (root)", out, errOut)
		}
		// The emptyDir reaches the host through virtiofsd. A root container
		// with CAP_MKNOD and CAP_FSETID can neither make a device node there
		// (virtiofsd has no CAP_MKNOD) nor give a file the setuid bit, by
		// chmod or at creation (virtiofsd's seccomp filter).
		for _, c := range []struct{ script, want string }{
			{`busybox mknod /ed/null c 1 3 2>&1 || true`, "mknod: /ed/null: Operation not permitted\n"},
			{`touch /ed/f && chmod u+s /ed/f 2>&1 || true; stat -c %A /ed/f`, "chmod: /ed/f: Operation not permitted\n-rw-r--r--\n"},
			{`cp -p /bin/busybox-suid /ed/s 2>&1 || true; test -e /ed/s || echo absent`, "cp: can't create '/ed/s': Operation not permitted\nabsent\n"},
		} {
			if out := v.mustSh(t, c.script); out != c.want {
				t.Errorf("%s: %q, want %q", c.script, out, c.want)
			}
		}
		checkNoSetuidOrDevices(t, host)
	})

	// The container keeps the VM's network namespace (the pod network
	// expects it there): the agent reports a server the container runs,
	// though it cannot see the container's processes or mounts.
	t.Run("the container's server is the pod's", func(t *testing.T) {
		if _, err := v.agent.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: "c", ProcessId: "srv", Args: []string{"busybox", "nc", "-l", "-p", "8079"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.agent.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "c", ProcessId: "srv"}); err != nil {
			t.Fatal(err)
		}
		version := ""
		for {
			resp, err := v.agent.Listeners(ctx, &api.ListenersRequest{KnownVersion: version, WaitNs: int64(10 * time.Second)})
			if err != nil {
				t.Fatalf("listeners (last %q): %v", version, err)
			}
			if slices.ContainsFunc(resp.GetPorts(), func(p *api.ListenPort) bool { return p.GetProtocol() == "TCP" && p.GetPort() == 8079 }) {
				break
			}
			version = resp.GetVersion()
		}
	})

	yes := true
	v.create(t, &api.CreateContainerRequest{ContainerId: "locked", Hostname: "pod-a", Mounts: []*api.Mount{emptyDir},
		Security: &api.Security{Capabilities: []string{}, NoNewPrivileges: &yes, ReadOnlyRoot: true, Seccomp: "runtime/default"}})
	t.Run("drop ALL, no_new_privs, read-only root, runtime/default seccomp", func(t *testing.T) {
		if out, errOut, _ := v.shIn(t, "locked", "1000", `/bin/busybox-suid stat -c %u /proc/self/status`); out != "1000\n" {
			t.Errorf("setuid under no_new_privs: %q %q, want 1000 (no privilege gained)", out, errOut)
		}
		for _, c := range []struct{ script, want string }{
			{`grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr '\t' ' '`, "CapEff: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n"},
			{`touch /new 2>&1 || true`, "touch: /new: Read-only file system\n"},
			// Without capabilities a user namespace is still allowed by the
			// kernel; the profile refuses it.
			{`busybox unshare -U true 2>&1 || true`, "unshare: unshare(0x10000000): Operation not permitted\n"},
			{`busybox mknod /ed/null2 c 1 3 2>&1 || true`, "mknod: /ed/null2: Operation not permitted\n"},
		} {
			if out, _, _ := v.shIn(t, "locked", "", c.script); out != c.want {
				t.Errorf("%s: %q, want %q", c.script, out, c.want)
			}
		}
		if _, err := os.Lstat(filepath.Join(host, "null2")); !os.IsNotExist(err) {
			t.Errorf("a device node reached the host: %v", err)
		}
		if out, _, _ := v.shIn(t, "locked", "", `touch /ed/g && chmod u+s /ed/g 2>&1; stat -c %A /ed/g`); out != "chmod: /ed/g: Operation not permitted\n-rw-r--r--\n" {
			t.Errorf("chmod u+s in the emptyDir without capabilities: %q", out)
		}
		checkNoSetuidOrDevices(t, host)
	})
	if c := v.console(t); strings.Contains(c, "agent panicked") || strings.Contains(c, "panic in") {
		t.Errorf("the agent panicked:\n%s", c)
	}
}

// checkNoSetuidOrDevices fails the test if anything under the host
// directory of a share is a device node or has the setuid bit.
func checkNoSetuidOrDevices(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if m := info.Mode(); m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSetuid) != 0 {
			t.Errorf("on the host: %s is %v", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
