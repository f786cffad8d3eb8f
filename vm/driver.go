package vm

import (
	"context"
	"errors"
	"io"
)

// Driver boots machines on one hypervisor. It runs inside the per-VM shim
// process (see vm/shim), never in the node process, so that restarting the
// node does not stop a machine. Implementations: vm/qemu (Linux), vm/vz
// (macOS). Anything a backend may or may not offer belongs in an optional
// interface checked by type assertion, not here.
type Driver interface {
	// Name is the backend's short name ("qemu", "vz").
	Name() string
	// Check reports whether the hypervisor can run machines on this host
	// right now; the node's health (Ping) and `doctor` call it.
	Check(ctx context.Context) error
	// Start boots the machine described by spec. dir is a private
	// directory for the backend's own files (sockets, pid files). Start
	// returns once the hypervisor runs; the guest may still be booting.
	Start(ctx context.Context, spec Spec, dir string) (Machine, error)
}

// Machine is one running virtual machine, owned by the process that started
// it.
type Machine interface {
	// Port returns the host end of the named virtio console port (one of
	// Spec.Ports). A backend may return it only once.
	Port(ctx context.Context, name string) (io.ReadWriteCloser, error)
	// RequestStop asks the guest to power off and returns at once.
	RequestStop(ctx context.Context) error
	// Kill stops the machine immediately.
	Kill() error
	// Done is closed when the machine has stopped.
	Done() <-chan struct{}
	// Err says why the machine stopped once Done is closed: nil for a
	// power-off by the guest.
	Err() error
	// Pid is the operating-system process that holds the guest's memory
	// (the QEMU process, or the shim itself under vz), for memory accounting.
	Pid() int
}

// BalloonMachine is a Machine whose guest memory the host takes back with a
// traditional memory balloon (vz). The shim drives it from the free memory
// the guest agent reports (vm/balloon). QEMU's machines do not implement
// it: their guests report free pages themselves (free page reporting).
type BalloonMachine interface {
	Machine
	// SetMemoryTarget sets the guest memory size the balloon aims for, in
	// bytes: the configured size empties the balloon.
	SetMemoryTarget(ctx context.Context, bytes uint64) error
}

// Saver is a Machine whose guest can be written to a file and resumed later
// by a machine of the same shape (Spec.RestoreFrom), as Kata's VM templates
// and Firecracker's snapshots are: under emulation a resume takes a
// fraction of a boot. Save pauses the guest for good; the caller kills the
// machine afterwards.
type Saver interface {
	Machine
	Save(ctx context.Context, path string) error
}

// ErrNotSupported is returned by backends and stubs for a feature the host
// platform does not have (for example vz on Linux).
var ErrNotSupported = errors.New("not supported on this platform")
