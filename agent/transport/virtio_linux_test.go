package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func fakePorts(t *testing.T, ports map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for dev, name := range ports {
		os.MkdirAll(filepath.Join(dir, dev), 0o755)
		if name != "" {
			os.WriteFile(filepath.Join(dir, dev, "name"), []byte(name+"\n"), 0o444)
		}
	}
	return dir
}

func TestFindPortByName(t *testing.T) {
	sys := fakePorts(t, map[string]string{"vport0p0": "", "vport1p1": "vkav.log", "vport1p2": "vkav.agent"})
	p, err := FindPort(sys, "/dev", "vkav.agent")
	if err != nil || p != "/dev/vport1p2" {
		t.Fatalf("got %q %v", p, err)
	}
	if _, err := FindPort(sys, "/dev", "other"); !errors.Is(err, ErrPortNotFound) {
		t.Fatalf("missing port: %v", err)
	}
	if _, err := FindPort(filepath.Join(sys, "absent"), "/dev", "x"); !errors.Is(err, ErrPortNotFound) {
		t.Fatalf("missing class dir: %v", err)
	}
}

func TestWaitForPortSeesALatePort(t *testing.T) {
	sys := t.TempDir()
	devDir := t.TempDir()
	go func() {
		time.Sleep(30 * time.Millisecond)
		os.MkdirAll(filepath.Join(sys, "vport3p1"), 0o755)
		os.WriteFile(filepath.Join(sys, "vport3p1", "name"), []byte("vkav.agent\n"), 0o444)
		time.Sleep(30 * time.Millisecond)
		os.WriteFile(filepath.Join(devDir, "vport3p1"), nil, 0o600) // the node appears last
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := WaitForPort(ctx, sys, devDir, "vkav.agent", 5*time.Millisecond)
	if err != nil || p != filepath.Join(devDir, "vport3p1") {
		t.Fatalf("got %q %v", p, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := WaitForPort(short, sys, devDir, "never", 5*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("never-appearing port: %v", err)
	}
}

// A socket reports POLLHUP once its peer is gone, as a virtio port does
// while the host end is closed.
func TestWaitHostConnectedWaitsWhileHangup(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	guest := os.NewFile(uintptr(fds[0]), "guest")
	host := os.NewFile(uintptr(fds[1]), "host")
	defer guest.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitHostConnected(ctx, guest, time.Millisecond); err != nil {
		t.Fatalf("connected peer: %v", err)
	}
	host.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := waitHostConnected(short, guest, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung-up peer: %v, want to keep waiting", err)
	}
}

// Connect on a real character device: a pty slave whose master is open
// (no POLLHUP) behaves like a connected port.
func TestVirtioPortConnectOnACharacterDevice(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	rc, _ := master.SyscallConn()
	var n int
	rc.Control(func(fd uintptr) {
		unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0)
		n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &VirtioPort{Path: "/dev/pts/" + strconv.Itoa(n)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rwc, err := p.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rwc.Close()
	if _, err := master.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if k, err := rwc.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q %v", buf[:k], err)
	}
}
