package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// The main goroutine keeps the main thread (locking in init is the documented
// way), and TestMain lets tests run functions on it: the only way to make
// Do's goroutine start on the main thread deterministically.
func init() { runtime.LockOSThread() }

var onMainThread = make(chan func())

func TestMain(m *testing.M) {
	code := make(chan int)
	go func() { code <- m.Run() }()
	for {
		select {
		case f := <-onMainThread:
			f()
		case c := <-code:
			os.Exit(c)
		}
	}
}

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A regression test: the integration test's stand-in kubelet opened its
// socket through Do, Do's goroutine happened to start on the main thread,
// which then stayed in the cluster's namespace, and `cluster down` found the
// test process "inside" and sent it SIGTERM.
func TestDoNeverMovesTheMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace: run as root (the control-plane tests do: sudo -E make test-controlplane)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip not found: apt-get install iproute2")
	}
	name := fmt.Sprintf("vk-unit-do-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	host, inside := netnsInode(t, "/proc/self/ns/net"), netnsInode(t, Path(name))

	type result struct {
		onMain       bool
		fnTid, fnIno uint64
		err          error
	}
	res := make(chan result, 1)
	onMainThread <- func() {
		r := result{onMain: unix.Gettid() == unix.Getpid()}
		f, err := os.Open(Path(name))
		if err != nil {
			r.err = err
			res <- r
			return
		}
		defer f.Close()
		errc := make(chan error, 1)
		// Called right here, on the main thread: the case that went wrong.
		doLocked(f, name, func() error {
			r.fnTid = uint64(unix.Gettid())
			var st unix.Stat_t
			err := unix.Stat("/proc/thread-self/ns/net", &st)
			r.fnIno = st.Ino
			return err
		}, errc)
		r.err = <-errc
		res <- r
	}
	r := <-res
	if !r.onMain || r.err != nil {
		t.Fatalf("setup: ran on main thread %v, err %v", r.onMain, r.err)
	}
	if r.fnIno != inside {
		t.Errorf("fn ran in netns inode %d, want %d (the namespace)", r.fnIno, inside)
	}
	if r.fnTid == uint64(os.Getpid()) {
		t.Error("fn ran on the main thread")
	}
	if got := netnsInode(t, "/proc/self/ns/net"); got != host {
		t.Errorf("the process's netns is now %d, want the host's %d", got, host)
	}
	pids, err := Pids(name)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pids, os.Getpid()) {
		t.Errorf("Pids(%s) lists this process: `down` would stop it", name)
	}
}
