package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// SysPortsDir lists the guest's virtio console ports; each entry has a
	// "name" file holding the name the host gave the port.
	SysPortsDir = "/sys/class/virtio-ports"
	// hostPollInterval paces the wait for the host to connect: the
	// virtio_console driver reports POLLHUP while the host end is closed but
	// sends no wakeup that poll(2) sees when it opens, so we look again
	// (20 ms, the interval Apple's vminitd client uses to poll the agent).
	hostPollInterval = 20 * time.Millisecond
	// hostOpenWarnAfter is when a host end still closed is worth a line in
	// the console log: the shim opens its end before the guest boots.
	hostOpenWarnAfter = 10 * time.Second
)

// ErrPortNotFound is returned when no virtio console port has the name.
var ErrPortNotFound = errors.New("virtio console port not found")

// FindPort returns the device node (e.g. /dev/vport2p1) of the virtio
// console port called name, looking under sysDir (SysPortsDir) and devDir
// (/dev).
func FindPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find port %q: %w (no %s)", name, ErrPortNotFound, sysDir)
		}
		return "", fmt.Errorf("find port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name (e.g. the console itself)
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("find port %q: %w", name, ErrPortNotFound)
}

// WaitForPort polls until the named port exists (its driver may still be
// loading) and returns its device node.
func WaitForPort(ctx context.Context, sysDir, devDir, name string, every time.Duration) (string, error) {
	for {
		path, err := FindPort(sysDir, devDir, name)
		if err == nil {
			if _, serr := os.Stat(path); serr == nil {
				return path, nil
			}
		} else if !errors.Is(err, ErrPortNotFound) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for port %q: %w", name, ctx.Err())
		case <-time.After(every):
		}
	}
}

// VirtioPort is the guest end of a named virtio console port.
//
// Linux virtio_console semantics it handles: while the host end is not
// connected read() returns 0 at once, write() blocks and poll() reports
// POLLHUP. A read of 0 therefore ends the session (EOF), and Connect waits
// for the host before the next session starts. The driver learns that the
// host end is open only from the device's VIRTIO_CONSOLE_PORT_OPEN message;
// QEMU sends it when its chardev connects, and a hypervisor that never
// sent it would leave this port unusable, which Connect says in the log.
type VirtioPort struct {
	Path string
	// Log, if set, hears when the host end stays closed for long.
	Log *slog.Logger
}

var _ Port = (*VirtioPort)(nil)

// Connect opens the device afresh for one session, so that nothing of the
// previous session's state survives, and returns once the host end is
// connected.
func (p *VirtioPort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	// os.OpenFile registers the character device with Go's poller (it
	// supports poll), so Close unblocks a pending read or write.
	f, err := os.OpenFile(p.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open agent port %s: %w", p.Path, err)
	}
	warn := time.AfterFunc(hostOpenWarnAfter, func() {
		if p.Log != nil {
			p.Log.Warn("the host end of the agent port is still closed (no VIRTIO_CONSOLE_PORT_OPEN from the hypervisor)",
				"port", p.Path, "after", hostOpenWarnAfter)
		}
	})
	err = waitHostConnected(ctx, f, hostPollInterval)
	warn.Stop()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wait for host on %s: %w", p.Path, err)
	}
	return f, nil
}

// waitHostConnected returns once poll(2) stops reporting POLLHUP on f.
func waitHostConnected(ctx context.Context, f *os.File, every time.Duration) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var hup bool
		var perr error
		err := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
			for {
				_, perr = unix.Poll(fds, 0)
				if perr != unix.EINTR {
					break
				}
			}
			hup = fds[0].Revents&unix.POLLHUP != 0
		})
		if err != nil {
			return err
		}
		if perr != nil {
			return fmt.Errorf("poll: %w", perr)
		}
		if !hup {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}
