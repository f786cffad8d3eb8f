package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// Roles the test binary plays when re-executed.
const (
	// envShimMain runs Run with the fake driver (the shim process).
	envShimMain = "VKAV_SHIM_TEST_SHIM"
	// envNoAgentShutdown runs the shim without a GuestShutdown.
	envNoAgentShutdown = "VKAV_SHIM_TEST_NO_AGENT_SHUTDOWN"
	// envLaunchDir makes the binary a short-lived "node": it launches a
	// shim for the directory in its value and exits.
	envLaunchDir = "VKAV_SHIM_TEST_LAUNCH_DIR"
	envLaunchLog = "VKAV_SHIM_TEST_LAUNCH_LOGDIR"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envFakeHypervisor) == "1":
		// Killed by PDEATHSIG, Machine.Kill or Delete; the bound only
		// limits a leak if a test goes wrong.
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	case os.Getenv(envShimMain) == "1":
		os.Exit(runTestShim())
	case os.Getenv(envLaunchDir) != "":
		dir := os.Getenv(envLaunchDir)
		if _, err := Launch(context.Background(), dir, testConfig(dir, os.Getenv(envLaunchLog)), testShimArgv(dir)...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	removeTestBundle()
	os.Exit(code)
}

func runTestShim() int {
	var dir string
	for i, a := range os.Args {
		if a == "--dir" && i+1 < len(os.Args) {
			dir = os.Args[i+1]
		}
	}
	var opts []RunOption // the default GuestShutdown: AgentShutdown over gRPC
	if os.Getenv(envNoAgentShutdown) == "1" {
		opts = append(opts, WithGuestShutdown(nil))
	}
	drivers := map[string]vm.Driver{"fake": fakeDriver{}, "qemu": qemu.New(qemu.Options{})}
	if err := Run(context.Background(), dir, drivers, opts...); err != nil {
		return 1
	}
	return 0
}

func testConfig(dir, logDir string) Config {
	return Config{
		Spec: vm.Spec{
			ID: "0123456789ab", Arch: "amd64", Kernel: "/nonexistent/kernel", Initrd: "/nonexistent/initrd",
			CPUs: 1, MemoryMiB: 128, ConsoleLog: filepath.Join(dir, "console.log"),
			Ports: []string{vm.AgentPort, vm.LogPort},
		},
		Driver: "fake",
		LogDir: logDir,
	}
}

func testShimArgv(dir string, env ...string) []LaunchOption {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return []LaunchOption{WithArgv(exe, "shim", "--dir", dir), WithEnv(append(env, envShimMain+"=1")...)}
}

// shortTempDir returns a directory with a short path, so socket paths stay
// under sun_path's 108 bytes (t.TempDir's names can be long).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type fakeVM struct {
	*Client
	dir, logDir string
}

// launchFake launches a shim with the fake driver; env adds fake-machine
// knobs. The machine is deleted when the test ends.
func launchFake(t testing.TB, mutate func(*Config), env ...string) fakeVM {
	t.Helper()
	root := shortTempDir(t)
	dir, logDir := filepath.Join(root, "vm"), filepath.Join(root, "logs")
	cfg := testConfig(dir, logDir)
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Launch(ctx, dir, cfg, testShimArgv(dir, env...)...)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { deleteQuietly(t, dir) })
	return fakeVM{Client: c, dir: dir, logDir: logDir}
}

// deleteQuietly removes a machine a test may have left running.
func deleteQuietly(t testing.TB, dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	c, err := Connect(dir)
	if c == nil {
		t.Logf("cleanup connect %s: %v", dir, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Delete(ctx); err != nil {
		t.Errorf("cleanup delete %s: %v", dir, err)
	}
}

// eventually polls cond until it holds or the bound passes.
func eventually(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func shimLogContains(t *testing.T, dir, s string) bool {
	t.Helper()
	return strings.Contains(readFileString(t, filepath.Join(dir, logFile)), s)
}

// waitShimLog waits until shim.log holds s (the shim logs asynchronously).
func waitShimLog(t *testing.T, dir, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !shimLogContains(t, dir, s) {
		if time.Now().After(deadline) {
			t.Fatalf("shim.log lacks %q:\n%s", s, readFileString(t, filepath.Join(dir, logFile)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
