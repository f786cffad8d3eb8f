package vmtest

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/guesttest"
	"github.com/vk-applevm/vk-applevm/image/ext4"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/image/rootfs"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

// Roles of the re-executed test binary.
const (
	// envShim makes the binary the shim of one VM (shim.Run).
	envShim = "VKAV_VMTEST_SHIM"
	// envNoAgentShutdown makes a graceful stop skip the agent's Shutdown
	// RPC and go straight to Machine.RequestStop (the power button).
	envNoAgentShutdown = "VKAV_VMTEST_NO_AGENT_SHUTDOWN"
)

// bootTimeout bounds one boot to a ready agent under TCG on a loaded
// 2-core host (about 4 s when idle).
const bootTimeout = 90 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(envShim) == "1" {
		os.Exit(runShim())
	}
	if testenv.SkipPackage("VMs (QEMU and the guest bundle)") {
		return
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
	var opts []shim.RunOption
	if os.Getenv(envNoAgentShutdown) == "1" {
		opts = append(opts, shim.WithGuestShutdown(nil))
	}
	d := qemu.New(qemu.Options{})
	if err := shim.Run(context.Background(), dir, map[string]vm.Driver{d.Name(): d}, opts...); err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		return 1
	}
	return 0
}

// fixtures are built once per test binary: the guest bundle with the real
// agent and the busybox root filesystem image, which VMs share read-only.
var fixtures struct {
	once   sync.Once
	dir    string
	bundle guest.Bundle
	rootfs string
	err    error
}

func buildFixtures(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("QEMU is needed: apt-get install qemu-system-x86 (%v)", err)
	}
	img := imagetest.Busybox(t)
	fixtures.once.Do(func() {
		fixtures.dir, fixtures.err = os.MkdirTemp("", "vkav-vmtest-")
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
		var layers []v1.Layer
		if layers, fixtures.err = img.Layers(); fixtures.err != nil {
			return
		}
		// A setuid-root copy of busybox, for the no_new_privs test.
		var suid v1.Layer
		if suid, fixtures.err = suidBusyboxLayer(ctx); fixtures.err != nil {
			return
		}
		layers = append(layers, suid)
		fixtures.rootfs = filepath.Join(fixtures.dir, "busybox.ext4")
		_, fixtures.err = rootfs.Build(ctx, layers, fixtures.rootfs)
	})
	if fixtures.err != nil {
		t.Fatalf("build the guest bundle and root filesystem: %v", fixtures.err)
	}
}

// vmOptions vary a test VM.
type vmOptions struct {
	shares          []vm.Share
	cmdline         string
	noAgentShutdown bool
	nics            []vm.NIC
}

// testVM is one booted VM with a ready agent.
type testVM struct {
	dir, logDir string
	shim        *shim.Client
	agent       *client.Client
	ready       *api.InfoResponse
	booted      time.Duration // Launch to a ready agent, host wall time
}

// bootVM launches a VM through the shim and waits for its agent. It is
// deleted when the test ends.
func bootVM(t testing.TB, o vmOptions) *testVM {
	t.Helper()
	buildFixtures(t)
	v, err := launchVM(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// launchVM is bootVM for any goroutine: it returns errors instead of
// failing the test (buildFixtures must have run).
func launchVM(t testing.TB, o vmOptions) (*testVM, error) {
	root, err := os.MkdirTemp("", "vkt") // short: unix socket paths
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	v := &testVM{dir: filepath.Join(root, "vm"), logDir: filepath.Join(root, "logs")}
	scratch := filepath.Join(root, "scratch.ext4")
	if err := ext4.CreateEmpty(scratch, 256<<20); err != nil {
		return nil, err
	}
	b := fixtures.bundle
	cfg := shim.Config{
		Spec: vm.Spec{
			ID: randomID(), Arch: b.Arch, Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: o.cmdline,
			CPUs: 1, MemoryMiB: 256,
			Disks: []vm.Disk{
				{Serial: vm.DiskRootfs, Path: fixtures.rootfs, ReadOnly: true},
				{Serial: vm.DiskScratch, Path: scratch},
			},
			Shares:     o.shares,
			NICs:       o.nics,
			Ports:      []string{vm.AgentPort, vm.LogPort},
			ConsoleLog: filepath.Join(root, "console.log"),
		},
		Driver: "qemu", LogDir: v.logDir,
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	env := []string{envShim + "=1"}
	if o.noAgentShutdown {
		env = append(env, envNoAgentShutdown+"=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	begin := time.Now()
	v.shim, err = shim.Launch(ctx, v.dir, cfg, shim.WithArgv(exe, "shim", "--dir", v.dir), shim.WithEnv(env...))
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	t.Cleanup(func() {
		if v.agent != nil {
			v.agent.Close()
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		if err := v.shim.Delete(dctx); err != nil {
			t.Errorf("delete VM: %v", err)
		}
	})
	if v.agent, err = client.Dial(ctx, v.shim.DialAgent); err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	if v.ready, err = v.agent.WaitReady(ctx); err != nil {
		console, _ := os.ReadFile(cfg.Spec.ConsoleLog)
		return nil, fmt.Errorf("agent not ready: %w\nconsole:\n%s", err, console)
	}
	v.booted = time.Since(begin)
	return v, nil
}

// console is the VM's console log so far.
func (v *testVM) console(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(v.dir), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// createContainer makes container "c" on the VM's disks with mounts.
func (v *testVM) createContainer(t testing.TB, mounts ...*api.Mount) {
	t.Helper()
	v.create(t, &api.CreateContainerRequest{ContainerId: "c", Mounts: mounts})
}

// create makes a container on the VM's disks.
func (v *testVM) create(t testing.TB, req *api.CreateContainerRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	req.RootfsDisk, req.ScratchDisk = vm.DiskRootfs, vm.DiskScratch
	if _, err := v.agent.CreateContainer(ctx, req); err != nil {
		t.Fatalf("create container: %v\nconsole:\n%s", err, v.console(t))
	}
}

// sh runs a shell script in the container and returns its stdout, stderr
// and exit code.
func (v *testVM) sh(t testing.TB, script string) (string, string, int32) {
	t.Helper()
	return v.shIn(t, "c", "", script)
}

// shIn runs a shell script in container id as user ("" for the image's).
func (v *testVM) shIn(t testing.TB, id, user, script string) (string, string, int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb strings.Builder
	st, err := v.agent.Exec(ctx, client.ExecOptions{
		ContainerID: id, ProcessID: randomID(), User: user, Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out.String(), errb.String(), st.GetExitCode()
}

// mustSh runs script and fails the test unless it exits 0.
func (v *testVM) mustSh(t testing.TB, script string) string {
	t.Helper()
	out, errOut, code := v.sh(t, script)
	if code != 0 {
		t.Fatalf("%q exited %d: %s%s", script, code, out, errOut)
	}
	return out
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
