package vmtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/image/ext4"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// TestAgentPortHandshakeOnQEMU drives the host end of the agent port as the
// shim does (transport.Serve over vm.Machine.Port), on QEMU's virtio-serial
// port with the real agent as PID 1:
//   - garbage the host writes before the guest has opened its end (QEMU
//     holds it back and hands it to the guest when it opens) does not keep
//     a session from working: the guest discards it before the ack;
//   - a reset makes the guest's transport start over: the old gRPC
//     connection fails rather than hangs, and the client's next call runs
//     on a fresh session;
//   - bytes lost or added mid-session (raw garbage at a frame boundary)
//     end the guest's session, and it reconnects by itself.
func TestAgentPortHandshakeOnQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*bootTimeout)
	defer cancel()
	m, console := startDirect(ctx, t, false)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		t.Fatal(err)
	}
	// Written at once: the guest is still in its firmware or kernel, far
	// from opening the port (the console shows when it did).
	garbage := []byte("\x00\x00\x00\x0c garbage before the guest opened its end \x7fVKAVACK\x7f\xff")
	if _, err := port.Write(garbage); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := transport.Serve(port, log)
	defer h.Close()

	ac, err := client.Dial(ctx, h.Open)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := ac.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v\nconsole:\n%s", err, console())
	}
	// The guest saw the host's early bytes and dropped them before the
	// ack (the initial reset message plus the garbage).
	// (The line precedes the ack, but the console reaches its file through
	// the emulated serial port, which may lag behind the agent port.)
	discarded := regexp.MustCompile(`discarded bytes before the host's ack" bytes=(\d+)`)
	var m1 []string
	for deadline := time.Now().Add(30 * time.Second); m1 == nil; time.Sleep(100 * time.Millisecond) {
		if m1 = discarded.FindStringSubmatch(console()); m1 == nil && time.Now().After(deadline) {
			t.Fatalf("the guest did not report discarding the host's early bytes; console:\n%s", console())
		}
	}
	if n, _ := strconv.Atoi(m1[1]); n < len(garbage) {
		t.Fatalf("guest discarded %d bytes, want at least the %d of garbage", n, len(garbage))
	}
	if h.Sessions() != 1 {
		t.Fatalf("host sessions = %d, want 1", h.Sessions())
	}

	// A reconnect: the old stream ends, the next call gets a fresh one.
	held, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Reset("test: reconnect"); err != nil {
		t.Fatal(err)
	}
	_ = held.SetReadDeadline(time.Now().Add(bootTimeout))
	if _, err := held.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("a stream of the reset session: read %v, want it closed", err)
	}
	if _, err := ac.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready after a reconnect: %v\nconsole:\n%s", err, console())
	}
	if h.Sessions() != 2 {
		t.Fatalf("host sessions = %d, want 2", h.Sessions())
	}

	// Bytes out of nowhere between two frames: the guest's yamux rejects
	// them, the guest says hello again, and calls work once more.
	if _, err := port.Write([]byte("\xffout of step\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(bootTimeout)
	for h.Sessions() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no new session after garbage mid-session (sessions %d); console:\n%s", h.Sessions(), console())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := ac.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready after garbage mid-session: %v\nconsole:\n%s", err, console())
	}
	for _, line := range strings.Split(console(), "\n") {
		if strings.Contains(line, "agent port") || strings.Contains(line, "transport session") {
			t.Log("console: " + line)
		}
	}
}

// startDirect boots a VM with the QEMU driver in the test process, without
// a shim, so the test holds the agent port's host end and the machine's
// QMP. With disks, it has the busybox root filesystem and a scratch disk
// for a container. console reads the VM's console log.
func startDirect(ctx context.Context, t *testing.T, disks bool) (vm.Machine, func() string) {
	t.Helper()
	buildFixtures(t)
	root, err := os.MkdirTemp("", "vkt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	b := fixtures.bundle
	spec := vm.Spec{
		ID: randomID(), Arch: b.Arch, Kernel: b.Kernel, Initrd: b.Initrd,
		CPUs: 1, MemoryMiB: 256,
		Ports:      []string{vm.AgentPort},
		ConsoleLog: filepath.Join(root, "console.log"),
	}
	if disks {
		scratch := filepath.Join(root, "scratch.ext4")
		if err := ext4.CreateEmpty(scratch, 256<<20); err != nil {
			t.Fatal(err)
		}
		spec.Disks = []vm.Disk{
			{Serial: vm.DiskRootfs, Path: fixtures.rootfs, ReadOnly: true},
			{Serial: vm.DiskScratch, Path: scratch},
		}
	}
	m, err := qemu.New(qemu.Options{}).Start(ctx, spec, filepath.Join(root, "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Kill()
		<-m.Done()
	})
	return m, func() string {
		b, _ := os.ReadFile(spec.ConsoleLog)
		return string(b)
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
