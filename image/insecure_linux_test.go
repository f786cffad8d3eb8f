package image_test

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// listenInNetns creates a network namespace joined to this one by a veth
// pair and returns a listener on the namespace's side: a registry on a
// non-loopback address, as the node sees test registries, without touching
// any address outside the test.
func listenInNetns(t *testing.T) net.Listener {
	t.Helper()
	testenv.Needs(t, "root (a network namespace)")
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace: run it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip not found: apt-get install iproute2")
	}
	id := os.Getpid() % 100000
	ns := fmt.Sprintf("vkavimg%d", id)
	hostIf, nsIf := fmt.Sprintf("vkih%d", id), fmt.Sprintf("vkin%d", id)
	// A /30 in 10.251.0.0/16 picked by pid, so parallel test binaries differ.
	subnet := fmt.Sprintf("10.251.%d.%d", id%250, (id/250%64)*4)
	base := net.ParseIP(subnet).To4()
	hostIP := net.IPv4(base[0], base[1], base[2], base[3]+1).String()
	nsIP := net.IPv4(base[0], base[1], base[2], base[3]+2).String()

	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	run("-n", ns, "link", "set", nsIf, "up")

	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		// setns changes only this thread; the socket stays in the namespace
		// it was created in.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		ln, lerr := net.Listen("tcp", nsIP+":5000")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it.
			done <- result{err: fmt.Errorf("restore netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ln, lerr}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("listen in netns %s: %v", ns, r.err)
	}
	return r.ln
}

func TestInsecureRegistryOnVeth(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.OnListener(listenInNetns(t)))
	ref := reg.Push(t, "insecure:1", imagetest.Busybox(t))
	ctx := context.Background()

	// Not loopback, not listed: plain HTTP is refused even though
	// go-containerregistry would fall back to it for an RFC 1918 address.
	s, _ := openStore(t)
	_, err := s.Pull(ctx, ref, image.PullOptions{})
	if !errors.Is(err, image.ErrPlainHTTP) {
		t.Fatalf("pull from unlisted plain-HTTP registry %s: want refusal, got %v", reg.Addr, err)
	}

	listed, _ := openStore(t, image.WithInsecureRegistries(reg.Addr))
	img, err := listed.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull from listed insecure registry: %v", err)
	}
	if img.Digest != digestOf(t, imagetest.Busybox(t)) {
		t.Errorf("pulled %s", img.Digest)
	}
}
