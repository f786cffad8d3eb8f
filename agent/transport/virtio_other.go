//go:build !linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// ErrNotSupported is returned by the guest-side port functions on systems
// other than Linux: only the guest runs them.
var ErrNotSupported = errors.New("virtio console ports are only available in a Linux guest")

// ErrPortNotFound is returned when no virtio console port has the name.
var ErrPortNotFound = errors.New("virtio console port not found")

// SysPortsDir lists the guest's virtio console ports.
const SysPortsDir = "/sys/class/virtio-ports"

// FindPort is guest-only.
func FindPort(sysDir, devDir, name string) (string, error) {
	return "", fmt.Errorf("find port %q: %w", name, ErrNotSupported)
}

// WaitForPort is guest-only.
func WaitForPort(ctx context.Context, sysDir, devDir, name string, every time.Duration) (string, error) {
	return "", fmt.Errorf("wait for port %q: %w", name, ErrNotSupported)
}

// VirtioPort is the guest end of a named virtio console port (Linux only).
type VirtioPort struct {
	Path string
	Log  *slog.Logger
}

// OpenVirtioPort is guest-only.
func OpenVirtioPort(name string) (*VirtioPort, error) {
	return nil, fmt.Errorf("open port %q: %w", name, ErrNotSupported)
}

// Connect is guest-only.
func (p *VirtioPort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	return nil, fmt.Errorf("connect port %s: %w", p.Path, ErrNotSupported)
}
