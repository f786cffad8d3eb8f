package netns

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Needs(t, "root (network namespaces)")
	if os.Geteuid() != 0 {
		t.Fatal("creating network namespaces needs root: run go test as root")
	}
}

func testName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "vkavt-ns-" + hex.EncodeToString(b)
}

func TestCreateDoRemove(t *testing.T) {
	requireRoot(t)
	name := testName()
	path, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path) })
	if ok, err := IsNamespace(path); err != nil || !ok {
		t.Fatalf("IsNamespace(%s) = %v, %v after Create", path, ok, err)
	}
	if _, err := Create(name); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Create(%s) = %v, want ErrExist", name, err)
	}

	// Inside, only lo exists; this process's namespace has more (or at
	// least differs in identity), and the thread comes back afterwards.
	var inside []net.Interface
	if err := Do(path, func() error {
		var err error
		inside, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0].Name != "lo" {
		t.Errorf("interfaces in a new namespace: %v, want only lo", inside)
	}
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	main, _ := os.Readlink(Self)
	if self != main {
		t.Errorf("after Do the goroutine's thread is in %s, the process in %s", self, main)
	}
	wantErr := errors.New("from fn")
	if err := Do(path, func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do returned %v, want fn's error", err)
	}

	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsNamespace(path); ok {
		t.Error("namespace still mounted after Remove")
	}
	if err := Remove(path); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// Creating namespaces must never leave the process's main thread, nor what
// Self names, in one of them.
func TestSelfStaysAfterManyCreates(t *testing.T) {
	requireRoot(t)
	before, err := os.Readlink(Self)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		path, err := Create(testName())
		if err != nil {
			t.Fatal(err)
		}
		if err := Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := os.Readlink(Self); after != before {
		t.Errorf("Self moved from %s to %s", before, after)
	}
	if main, _ := os.Readlink("/proc/self/ns/net"); main != before {
		t.Errorf("the main thread is in %s, the process started in %s", main, before)
	}
}

func TestPlainFileIsNotANamespace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsNamespace(path); err != nil || ok {
		t.Errorf("IsNamespace(plain file) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := IsNamespace(filepath.Join(t.TempDir(), "missing")); err != nil || ok {
		t.Errorf("IsNamespace(missing) = %v, %v; want false, nil", ok, err)
	}
	if _, err := Create("a/b"); err == nil {
		t.Error("Create accepted a name with a slash")
	}
}

func TestPidsListsProcessesInside(t *testing.T) {
	requireRoot(t)
	path, err := Create(testName())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path) })
	var cmd *exec.Cmd
	if err := Do(path, func() error {
		cmd = exec.Command("sleep", "60")
		return cmd.Start()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pids, err := Pids(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Pids = %v, want [%d] (the sleep started inside; not this process)", pids, cmd.Process.Pid)
	}
}

// First callers of makeShared at once must leave one mount on the
// directory, not one each stacked on the others. Each round uses a fresh
// directory on a tmpfs of its own; several rounds because the race is
// narrow (without the lock, 8 goroutines stacked 2 mounts in 4 of 10
// rounds).
func TestConcurrentMakeSharedMountsOnce(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
	for round := range 10 {
		dir := filepath.Join(base, fmt.Sprintf("netns%d", round))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				<-start
				errs <- makeShared(dir)
			}()
		}
		close(start)
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		n := mountsAt(t, dir)
		for range n {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		if n != 1 {
			t.Fatalf("round %d: %d mounts on %s after concurrent first calls, want 1", round, n, dir)
		}
	}
}

// mountsAt counts the mounts whose mount point is dir.
func mountsAt(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			n++
		}
	}
	return n
}
