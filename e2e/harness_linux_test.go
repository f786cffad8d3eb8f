package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
)

// env is shared by the tests of one run: a network namespace standing in
// for the machine (tests only reach addresses inside it), the vk-applevm
// binary, a state root and a registry holding busybox.
var env struct {
	repo     string
	bin      string
	guestDir string
	nsName   string
	nsPath   string
	hostIP   string // the veth address outside the namespace
	nsIP     string // the veth address inside
	root     string
	registry string // host:port inside the namespace (loopback)
	busybox  string // image reference
	// reg is the registry behind env.registry (pushes go to its listener
	// on this side); busyboxImg the image pushed as busybox.
	reg        *imagetest.Registry
	busyboxImg v1.Image
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testenv.SkipPackage("root, VMs and a control plane (the end-to-end suite)") {
		return
	}
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	teardown()
	os.Exit(code)
}

func setup() (int, error) {
	if os.Geteuid() != 0 {
		return 1, errors.New("the end-to-end tests boot VMs and create network namespaces: run them as root (make test does)")
	}
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	env.repo = filepath.Dir(wd)
	env.guestDir = filepath.Join(env.repo, "bin", "guest", runtime.GOARCH)
	if _, err := guest.Find(env.guestDir); err != nil {
		return 1, fmt.Errorf("%w: run `make guest` in %s first", err, env.repo)
	}
	tmp, err := os.MkdirTemp("", "vkav-e2e-")
	if err != nil {
		return 1, err
	}
	env.root = filepath.Join(tmp, "root")
	env.bin = filepath.Join(tmp, "vk-applevm")
	build := exec.Command("go", "build", "-o", env.bin, "./cmd/vk-applevm")
	build.Dir = env.repo
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("build vk-applevm: %v\n%s", err, out)
	}
	if err := makeNamespace(); err != nil {
		return 1, err
	}
	// The registry listens on the namespace's loopback: the node and the
	// CLI pull from 127.0.0.1 there without any insecure-registry flag.
	var ln net.Listener
	if err := netns.Do(env.nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return 1, fmt.Errorf("listen in %s: %w", env.nsName, err)
	}
	// Push through a listener on this side, then serve the same content
	// inside the namespace.
	reg, err := imagetest.NewRegistry()
	if err != nil {
		return 1, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return 1, fmt.Errorf("build the busybox test image: %w", err)
	}
	if _, err = reg.PushImage(ctx, "busybox:latest", img); err != nil {
		return 1, fmt.Errorf("push busybox: %w", err)
	}
	reg.ServeAlso(ln)
	env.registry = ln.Addr().String()
	env.busybox = env.registry + "/busybox:latest"
	env.reg, env.busyboxImg = reg, img
	return 0, nil
}

// makeNamespace creates the stand-in machine: a namespace with a veth
// pair to the host namespace and a default route through it, as
// kube-apiserver needs a non-loopback address with a route.
func makeNamespace() error {
	n := os.Getpid()%200 + 20
	env.nsName = "vkav-e2e-" + strconv.Itoa(os.Getpid())
	env.hostIP = fmt.Sprintf("10.203.%d.1", n)
	env.nsIP = fmt.Sprintf("10.203.%d.2", n)
	hostIf, nsIf := "ve"+strconv.Itoa(os.Getpid()), "eth0"
	cmds := [][]string{
		{"ip", "netns", "add", env.nsName},
		{"ip", "link", "add", hostIf, "type", "veth", "peer", "name", "vkavtmp" + strconv.Itoa(n)},
		{"ip", "link", "set", "vkavtmp" + strconv.Itoa(n), "netns", env.nsName},
		{"ip", "-n", env.nsName, "link", "set", "vkavtmp" + strconv.Itoa(n), "name", nsIf},
		{"ip", "addr", "add", env.hostIP + "/30", "dev", hostIf},
		{"ip", "link", "set", hostIf, "up"},
		{"ip", "-n", env.nsName, "addr", "add", env.nsIP + "/30", "dev", nsIf},
		{"ip", "-n", env.nsName, "link", "set", nsIf, "up"},
		{"ip", "-n", env.nsName, "link", "set", "lo", "up"},
		{"ip", "-n", env.nsName, "route", "add", "default", "via", env.hostIP},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s (iproute2 is needed: apt-get install iproute2)", strings.Join(c, " "), err, out)
		}
	}
	env.nsPath = filepath.Join(netns.Dir, env.nsName)
	return nil
}

func teardown() {
	stopClusterNode()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if env.root != "" && env.nsPath != "" {
		// Kill what the tests left running, then the VM network.
		out, _ := exec.Command("nsenter", inNamespace("ps", "-a")...).Output()
		for _, line := range strings.Split(string(out), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				_ = exec.Command("nsenter", inNamespace("rm", "-f", f[0])...).Run()
			}
		}
		if err := switchnet.Stop(ctx, env.root); err != nil {
			fmt.Fprintln(os.Stderr, "e2e teardown: pod network:", err)
		}
	}
	if env.nsName != "" {
		_ = exec.Command("ip", "netns", "del", env.nsName).Run()
	}
	if env.root != "" {
		os.RemoveAll(filepath.Dir(env.root))
	}
}

// inNamespace is the nsenter argument list running the CLI in the test's
// network namespace. Not `ip netns exec`: it also gives the command a
// private mount namespace, where the VM network's own named namespace
// (a bind mount under /run/netns) would vanish with the command.
func inNamespace(args ...string) []string {
	return append([]string{"--net=" + env.nsPath, "--", env.bin, "--root", env.root, "--guest", env.guestDir}, args...)
}

// vkav runs the CLI inside the namespace.
func vkav(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", inNamespace(args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("vk-applevm %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("vk-applevm %s → %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// vkavCommand is the CLI in the namespace, to be started by the caller.
func vkavCommand(args ...string) *exec.Cmd {
	return exec.Command("nsenter", inNamespace(args...)...)
}

// vmAddress is the container's IP as `ps` shows it: on the VM bridge, which
// the test namespace reaches.
func vmAddress(t *testing.T, name string) string {
	t.Helper()
	ip := psAddress(t, name)
	if ip == "" {
		t.Fatalf("no IP for %s in ps", name)
	}
	return ip
}

// publishAddress is the namespace's veth address (the machine's address)
// and a port free there, for -p.
func publishAddress(t *testing.T) (string, int) {
	t.Helper()
	var port int
	if err := netns.Do(env.nsPath, func() error {
		ln, err := net.Listen("tcp", env.nsIP+":0")
		if err != nil {
			return err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		return ln.Close()
	}); err != nil {
		t.Fatal(err)
	}
	return env.nsIP, port
}

// listenForVM listens on the namespace's veth address: "outside" the pod
// network, reached through the switch's gateway.
func listenForVM(t *testing.T, _ string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(env.nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", env.nsIP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// foreignPlatform: QEMU runs amd64 guests and translates nothing, so an
// arm64 image is refused before a VM boots. (The image is busybox
// relabelled: it must never get as far as running.)
func foreignPlatform(t *testing.T) foreignCase {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Fatalf("the Linux harness expects amd64 guests, this is %s", runtime.GOARCH)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img := imagetest.WithPlatform(t, env.busyboxImg, "linux/arm64")
	if _, err := env.reg.PushImage(ctx, "busybox-arm64:latest", img); err != nil {
		t.Fatalf("push the arm64 image: %v", err)
	}
	return foreignCase{
		ref: env.registry + "/busybox-arm64:latest", platform: "linux/arm64",
		wantErr: "linux/arm64 images need emulation this host does not offer",
	}
}

// httpGetFromHost GETs url over a connection opened inside the test
// namespace (net/http would dial from another thread, outside it) and
// returns "<status> <body>".
func httpGetFromHost(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	var conn net.Conn
	if err := netns.Do(env.nsPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", req.URL.Host, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req.Close = true
	if err := req.Write(conn); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b), err
}
