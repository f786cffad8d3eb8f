package shim

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/guesttest"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Real machines: QEMU (TCG unless VKAV_ACCEL=kvm) booting Debian's cloud
// kernel with the real guest agent as /init, launched through the shim.

var (
	bundleOnce sync.Once
	bundleDir  string
	testBundle guest.Bundle
	bundleErr  error
)

// agentBundle builds a guest bundle with cmd/vk-applevm-agent as /init once
// per test run (the kernel download is cached by mkguest).
func agentBundle(t *testing.T) guest.Bundle {
	testenv.Needs(t, "VMs (QEMU and a guest bundle)")
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("QEMU is needed: apt-get install qemu-system-x86 (%v)", err)
	}
	bundleOnce.Do(func() {
		bundleDir, bundleErr = os.MkdirTemp("", "vkav-shim-bundle-")
		if bundleErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		testBundle, bundleErr = guesttest.Build(ctx, guesttest.Options{Out: bundleDir, Agent: "./cmd/vk-applevm-agent"})
	})
	if bundleErr != nil {
		t.Fatalf("build the test guest bundle: %v", bundleErr)
	}
	return testBundle
}

func removeTestBundle() {
	if bundleDir != "" {
		os.RemoveAll(bundleDir)
	}
}

func launchQEMU(t *testing.T) fakeVM {
	t.Helper()
	b := agentBundle(t)
	root := shortTempDir(t)
	dir, logDir := filepath.Join(root, "vm"), filepath.Join(root, "logs")
	cfg := Config{
		Spec: vm.Spec{
			ID: "shimqemu", Arch: b.Arch, Kernel: b.Kernel, Initrd: b.Initrd,
			CPUs: 1, MemoryMiB: 256, ConsoleLog: filepath.Join(dir, "console.log"),
			Ports: []string{vm.AgentPort, vm.LogPort},
		},
		Driver: "qemu", LogDir: logDir,
	}
	c, err := Launch(ctxFor(t, 90*time.Second), dir, cfg, testShimArgv(dir)...)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { deleteQuietly(t, dir) })
	return fakeVM{Client: c, dir: dir, logDir: logDir}
}

func TestQEMUAgentThroughShim(t *testing.T) {
	agentBundle(t) // build outside the timing
	begin := time.Now()
	v := launchQEMU(t)
	launched := time.Since(begin)
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatalf("%v\nshim.log:\n%s\nconsole:\n%s", err, tailFile(filepath.Join(v.dir, logFile), 30), tailFile(filepath.Join(v.dir, "console.log"), 30))
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(st.HypervisorPid) + "/exe"); !strings.Contains(exe, "qemu-system") {
		t.Fatalf("hypervisor pid %d runs %q, want qemu-system", st.HypervisorPid, exe)
	}
	ctx := ctxFor(t, 90*time.Second)
	ac, err := client.Dial(ctx, v.DialAgent)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	info, err := ac.WaitReady(ctx)
	if err != nil {
		t.Fatalf("agent not ready through agent.sock: %v\nconsole:\n%s", err, tailFile(filepath.Join(v.dir, "console.log"), 30))
	}
	t.Logf("Launch returned after %v; agent answered through agent.sock %v after Launch began (guest uptime at ready %v)",
		launched.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), time.Duration(info.ReadyUptimeNs).Round(time.Millisecond))

	// A later process re-attaches to the same guest session.
	c2, err := Connect(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	ac2, err := client.Dial(ctx, c2.DialAgent)
	if err != nil {
		t.Fatal(err)
	}
	defer ac2.Close()
	info2, err := ac2.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info2.ReadyUptimeNs != info.ReadyUptimeNs || info2.UptimeNs <= info.UptimeNs {
		t.Fatalf("second client reached another boot: %v then %v", info, info2)
	}

	const grace = 30 * time.Second
	stopBegin := time.Now()
	if err := c2.Stop(ctx, grace); err != nil {
		t.Fatal(err)
	}
	t.Logf("graceful Stop (agent Shutdown → guest power-off) took %v", time.Since(stopBegin).Round(time.Millisecond))
	final, err := c2.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped by the guest's power-off, not by the kill at the grace
	// period's end. (Measured from the Stop, not from StartedAt: the boot
	// before it takes anything up to the 90 s allowed above on a loaded
	// machine.)
	if final.Error != "" || final.StoppedAt.Sub(stopBegin) >= grace {
		t.Fatalf("final state %+v (Stop began %v), want a guest power-off within the %v grace", final, stopBegin, grace)
	}
	waitShimLog(t, v.dir, "guest agent is shutting down")
	if console := readFileString(t, filepath.Join(v.dir, "console.log")); !strings.Contains(console, "Linux version") {
		t.Fatalf("console log lacks the kernel banner:\n%s", tailFile(filepath.Join(v.dir, "console.log"), 20))
	}
	if isProcess(st.HypervisorPid, st.HypervisorStartTime) {
		t.Fatal("QEMU still runs after the stop")
	}
}

func TestQEMUDiesWithShim(t *testing.T) {
	v := launchQEMU(t)
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.ShimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "QEMU dies with its shim", func() bool {
		return !isProcess(st.HypervisorPid, st.HypervisorStartTime)
	})
	c, err := Connect(v.dir)
	if !errors.Is(err, ErrShimDead) {
		t.Fatalf("Connect = %v, want ErrShimDead", err)
	}
	if err := c.Delete(ctxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
}
