package container_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/guesttest"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

// shimRole is the first argument that makes the test binary a VM's shim
// (the runtime starts shims as ShimArgv + "--dir" DIR).
const shimRole = "vkav-container-test-shim"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimRole {
		os.Exit(runShim())
	}
	code := m.Run()
	if fixtures.dir != "" {
		os.RemoveAll(fixtures.dir)
	}
	os.Exit(code)
}

func runShim() int {
	var dir string
	for i, a := range os.Args {
		if a == "--dir" && i+1 < len(os.Args) {
			dir = os.Args[i+1]
		}
	}
	d := qemu.New(qemu.Options{})
	if err := shim.Run(context.Background(), dir, map[string]vm.Driver{d.Name(): d}); err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		return 1
	}
	return 0
}

// fixtures are built once per test binary: the guest bundle with the real
// agent, and a registry serving the busybox test image.
var fixtures struct {
	once     sync.Once
	dir      string
	bundle   guest.Bundle
	registry *imagetest.Registry
	busybox  string
	err      error
}

func buildFixtures(t testing.TB) {
	t.Helper()
	testenv.Needs(t, "VMs (QEMU and the guest bundle)")
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("QEMU is needed: apt-get install qemu-system-x86 (%v)", err)
	}
	img := imagetest.Busybox(t)
	fixtures.once.Do(func() {
		fixtures.dir, fixtures.err = os.MkdirTemp("", "vkav-containertest-")
		if fixtures.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		fixtures.bundle, fixtures.err = guesttest.Build(ctx, guesttest.Options{
			Out: filepath.Join(fixtures.dir, "guest"), Agent: "./cmd/vk-applevm-agent"})
		if fixtures.err != nil {
			return
		}
		if fixtures.registry, fixtures.err = imagetest.NewRegistry(); fixtures.err != nil {
			return
		}
		fixtures.busybox, fixtures.err = fixtures.registry.PushImage(ctx, "busybox:latest", img)
	})
	if fixtures.err != nil {
		t.Fatalf("build the guest bundle and the test registry: %v", fixtures.err)
	}
}

// noNetwork gives VMs no network interface: these tests drive the guest
// through the agent only, and the VM network has tests of its own.
type noNetwork struct{}

func (noNetwork) Attach(context.Context, string, network.AttachOptions) (*network.Endpoint, error) {
	return nil, nil
}
func (noNetwork) Detach(context.Context, string) error     { return nil }
func (noNetwork) ReleasePod(context.Context, string) error { return nil }
func (noNetwork) Check(context.Context) error              { return nil }
func (noNetwork) Close(context.Context) error              { return nil }
func (noNetwork) Teardown(context.Context) error           { return nil }

// newRuntime returns a runtime on a fresh state root with the busybox image
// pulled; opts change its configuration (Root is set) before it opens.
func newRuntime(t testing.TB, opts ...func(*container.Config)) *container.Runtime {
	t.Helper()
	buildFixtures(t)
	root, err := os.MkdirTemp("", "vkc") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	images, err := image.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := images.Pull(ctx, fixtures.busybox, image.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := container.Config{
		Root: root, Images: images, Network: noNetwork{}, Guest: fixtures.bundle, Driver: "qemu",
		ShimArgv: []string{exe, shimRole}, BootTimeout: 90 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	rt, err := container.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// createVM boots a busybox VM logging to logDir; the test's
// cleanup deletes it (again).
func createVM(t testing.TB, rt *container.Runtime, logDir string) *container.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := rt.Create(ctx, container.VMConfig{Name: t.Name(), ImageRef: fixtures.busybox, LogDir: logDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := sb.Delete(dctx); err != nil {
			t.Errorf("delete VM: %v", err)
		}
	})
	return sb
}
