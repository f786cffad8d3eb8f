package qemu

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/guesttest"
	"github.com/vk-applevm/vk-applevm/vm"
)

// bootTimeout bounds one TCG boot on a loaded 2-core machine (a boot takes
// 2-4 s when idle).
const bootTimeout = 40 * time.Second

var (
	bundleOnce sync.Once
	bundleDir  string
	testBundle guest.Bundle
	bundleErr  error
	vmCounter  atomic.Int32
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runShimHelper()
		return
	}
	if p := os.Getenv(createSetuidEnv); p != "" {
		createSetuid(p)
		return
	}
	code := m.Run()
	if bundleDir != "" {
		os.RemoveAll(bundleDir)
	}
	os.Exit(code)
}

// floorBundle builds the guest bundle (floor init as /init) once per run.
func floorBundle(t testing.TB) guest.Bundle {
	testenv.Needs(t, "VMs (QEMU and a guest bundle)")
	t.Helper()
	bundleOnce.Do(func() {
		bundleDir, bundleErr = os.MkdirTemp("", "vkav-qemu-bundle-")
		if bundleErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		testBundle, bundleErr = guesttest.Build(ctx, guesttest.Options{Out: bundleDir})
	})
	if bundleErr != nil {
		t.Fatalf("build the test guest bundle: %v", bundleErr)
	}
	return testBundle
}

func testDriver(t testing.TB) *Driver {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("QEMU is needed: apt-get install qemu-system-x86 (%v)", err)
	}
	// No probe image: TCG, so tests never wait on a hanging nested KVM.
	return New(Options{Logger: testLogger})
}

var testLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// floorSpec is a spec booting the floor init with the given mode.
func floorSpec(t testing.TB, b guest.Bundle, mode string) vm.Spec {
	cmdline := ""
	if mode != "" {
		cmdline = "vkavfloor=" + mode
	}
	return vm.Spec{
		ID:   fmt.Sprintf("t%d-%d", os.Getpid(), vmCounter.Add(1)),
		Arch: b.Arch, Kernel: b.Kernel, Initrd: b.FloorInitrd, Cmdline: cmdline,
		CPUs: 1, MemoryMiB: 256, Ports: []string{vm.AgentPort},
		ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
	}
}

func startVM(ctx context.Context, t testing.TB, d *Driver, spec vm.Spec) vm.Machine {
	t.Helper()
	m, err := d.Start(ctx, spec, t.TempDir())
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { m.Kill() })
	return m
}

// readLines reads n lines from the machine's agent port.
func readLines(ctx context.Context, t testing.TB, m vm.Machine, until string) []string {
	t.Helper()
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		t.Fatalf("port: %v", err)
	}
	defer port.Close()
	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(port)
		for sc.Scan() {
			got = append(got, sc.Text())
			if sc.Text() == until {
				break
			}
		}
		lines <- got
	}()
	select {
	case got := <-lines:
		return got
	case <-ctx.Done():
		port.Close()
		t.Fatalf("waiting for %q on the agent port: %v (got %q)", until, ctx.Err(), <-lines)
		return nil
	}
}

func waitDone(ctx context.Context, t testing.TB, m vm.Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatalf("machine did not stop: %v", ctx.Err())
	}
}

// openPort returns the agent port as a line reader and the raw connection.
func openPort(ctx context.Context, t testing.TB, m vm.Machine) (*bufio.Reader, io.ReadWriteCloser) {
	t.Helper()
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		t.Fatalf("port: %v", err)
	}
	t.Cleanup(func() { port.Close() })
	return bufio.NewReader(port), port
}
