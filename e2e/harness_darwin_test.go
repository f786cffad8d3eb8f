package e2e

// The macOS harness for the CLI cases in cli_test.go: VMs boot through
// Virtualization.framework (the vk-applevm binary is signed with
// deploy/vz.entitlements), the CLI runs directly on this Mac, VMs use vz's
// NAT network (192.168.64.0/24 by default), and the registry listens on
// 127.0.0.1. It needs a real Mac with Apple silicon (hosted CI runners have
// no nested virtualization), the guest bundle from `vk-applevm kernel
// fetch` in bin/guest/arm64 (`make guest-darwin`), Xcode's command line
// tools (codesign) and, once, internet access to fetch Debian's
// busybox-static for arm64 and amd64.

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/debbin"
)

// env is shared by the tests of one run.
var env struct {
	repo, bin, guestDir, root string
	tmp                       string
	reg                       *imagetest.Registry
	registry                  string // 127.0.0.1:port
	busybox                   string // linux/arm64 busybox
	busyboxAmd64              string // linux/amd64 busybox, for Rosetta
}

// rosettaRuntime exists once Rosetta is installed (softwareupdate
// --install-rosetta); Virtualization.framework's Linux Rosetta share needs
// the same installation.
const rosettaRuntime = "/Library/Apple/usr/libexec/oah/libRosettaRuntime"

func TestMain(m *testing.M) {
	flag.Parse()
	if testenv.SkipPackage("vz VMs on a real Mac (the end-to-end suite)") {
		return
	}
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	if code == 0 {
		code = m.Run()
	}
	teardown()
	os.Exit(code)
}

func setup() (int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	env.repo = filepath.Dir(wd)
	env.guestDir = filepath.Join(env.repo, "bin", "guest", "arm64")
	if _, err := guest.Find(env.guestDir); err != nil {
		return 1, fmt.Errorf("%w: run `make guest-darwin` (vk-applevm kernel fetch) in %s first", err, env.repo)
	}
	// Under /tmp, not $TMPDIR (/var/folders/...): socket paths in the
	// state root must stay under macOS's 104-byte sun_path.
	if env.tmp, err = os.MkdirTemp("/tmp", "vkav-e2e-"); err != nil {
		return 1, err
	}
	env.root = filepath.Join(env.tmp, "root")
	env.bin = filepath.Join(env.tmp, "vk-applevm")
	// The node starts each VM's shim from its own directory; each VM lives
	// in its shim, and vz refuses unsigned processes.
	for _, name := range []string{"vk-applevm", "vk-applevm-shim"} {
		bin := filepath.Join(env.tmp, name)
		build := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
		build.Dir = env.repo
		if out, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
		sign := exec.Command("codesign", "-f", "--entitlements", filepath.Join(env.repo, "deploy", "vz.entitlements"), "-s", "-", bin)
		if out, err := sign.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("codesign %s (install Xcode's command line tools: xcode-select --install): %v\n%s", name, err, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if env.reg, err = imagetest.NewRegistry(); err != nil {
		return 1, err
	}
	env.registry = env.reg.Addr
	for _, arch := range []string{"arm64", "amd64"} {
		img, err := busyboxImage(ctx, arch)
		if err != nil {
			return 1, err
		}
		ref, err := env.reg.PushImage(ctx, "busybox-"+arch+":latest", img)
		if err != nil {
			return 1, fmt.Errorf("push busybox-%s: %w", arch, err)
		}
		if arch == "arm64" {
			env.busybox = ref
		} else {
			env.busyboxAmd64 = ref
		}
	}
	return 0, nil
}

func teardown() {
	if env.root != "" {
		r := runCLI(context.Background(), "", "ps", "-a")
		for _, line := range strings.Split(r.stdout, "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				runCLI(context.Background(), "", "rm", "-f", f[0])
			}
		}
	}
	if env.reg != nil {
		env.reg.Close()
	}
	if env.tmp != "" {
		os.RemoveAll(env.tmp)
	}
}

// busyboxApplets are the commands the tests run (the Linux harness asks
// busybox --list-full, which a Mac cannot run).
var busyboxApplets = []string{
	"bin/sh", "bin/echo", "bin/cat", "bin/ls", "bin/pwd", "bin/sleep", "bin/kill", "bin/stty", "bin/uname",
	"bin/true", "bin/false", "bin/ip", "usr/bin/id", "usr/bin/tr", "usr/bin/tty", "usr/bin/env",
	"usr/bin/wget", "usr/sbin/httpd",
}

// busyboxImage is a linux/<arch> image laid out like imagetest's busybox
// image, around Debian's static busybox for arch.
func busyboxImage(ctx context.Context, arch string) (v1.Image, error) {
	bin, err := debbin.Cached(ctx, nil, debbin.BusyboxStatic[arch], filepath.Join(imagetest.DefaultCacheDir(), "debian"))
	if err != nil {
		return nil, fmt.Errorf("busybox for linux/%s: %w", arch, err)
	}
	if err := checkELF(bin, arch); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	files := []imagetest.File{
		imagetest.Dir("bin", 0o755), imagetest.Dir("sbin", 0o755), imagetest.Dir("usr", 0o755),
		imagetest.Dir("usr/bin", 0o755), imagetest.Dir("usr/sbin", 0o755), imagetest.Dir("etc", 0o755),
		imagetest.Dir("root", 0o700), imagetest.Dir("home", 0o755),
		{Path: "home/user", Mode: fs.ModeDir | 0o755, UID: 1000, GID: 1000},
		imagetest.Dir("tmp", 0o777|fs.ModeSticky),
		imagetest.Dir("dev", 0o755), imagetest.Dir("proc", 0o555), imagetest.Dir("sys", 0o555),
		imagetest.Dir("run", 0o755), imagetest.Dir("var", 0o755),
		imagetest.Regular("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"),
		imagetest.Regular("etc/group", 0o644, "root:x:0:\nuser:x:1000:\n"),
		{Path: "bin/busybox", Mode: 0o755, Data: data},
	}
	for _, a := range busyboxApplets {
		files = append(files, imagetest.Symlink(a, "/bin/busybox"))
	}
	layer, err := imagetest.Layer(files)
	if err != nil {
		return nil, err
	}
	img, err := imagetest.NewImage([]v1.Layer{layer}, v1.Config{Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	return mutate.ConfigFile(img, cf)
}

func checkELF(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", path, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[arch]
	if f.Machine != want {
		return fmt.Errorf("busybox %s is %v, want %v", path, f.Machine, want)
	}
	return nil
}

// runCLI runs vk-applevm with the test's state root and guest bundle.
func runCLI(ctx context.Context, stdin string, args ...string) result {
	cmd := vkavCommand(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			err = <-done
		}
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code, r.stderr = -1, r.stderr+err.Error()
	}
	return r
}

// vkav runs the CLI to completion.
func vkav(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := runCLI(ctx, stdin, args...)
	if r.code == -1 {
		t.Fatalf("vk-applevm %s: %s", strings.Join(args, " "), r.stderr)
	}
	t.Logf("vk-applevm %s → %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// vkavCommand is the CLI, to be started by the caller.
func vkavCommand(args ...string) *exec.Cmd {
	return exec.Command(env.bin, append([]string{"--root", env.root, "--guest", env.guestDir}, args...)...)
}

// vmAddress is the VM's address on the pod network, from `ps`.
func vmAddress(t *testing.T, name string) string {
	t.Helper()
	if ip := psAddress(t, name); ip != "" {
		return ip
	}
	t.Fatalf("no address for %s in ps", name)
	return ""
}

// publishAddress is the Mac's loopback and a free port there, for -p.
func publishAddress(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

// listenForVM listens on one of the Mac's own non-loopback addresses,
// which pods reach through the switch's gateway (its loopback stays
// private to pods).
func listenForVM(t *testing.T, _ string) net.Listener {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			ln, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
			if err != nil {
				t.Fatalf("listen on %s: %v", n.IP, err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln
		}
	}
	t.Fatal("the Mac has no non-loopback IPv4 address for a VM to reach: join a network (Wi-Fi or Ethernet)")
	return nil
}

// httpGetFromHost GETs url and returns "<status> <body>".
func httpGetFromHost(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b), err
}

// foreignPlatform: linux/amd64 runs through Rosetta when it is installed,
// and is refused with the way to install it when it is not.
func foreignPlatform(t *testing.T) foreignCase {
	t.Helper()
	fc := foreignCase{ref: env.busyboxAmd64, platform: "linux/amd64"}
	if _, err := os.Stat(rosettaRuntime); err == nil {
		fc.runs = true
	} else {
		fc.wantErr = "softwareupdate --install-rosetta"
	}
	return fc
}
