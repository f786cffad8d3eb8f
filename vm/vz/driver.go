package vz

import (
	"errors"
	"log/slog"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Name is the backend's short name.
const Name = "vz"

// MinMacOSMajor is the oldest macOS this backend runs on: named virtio
// console ports (VZVirtioConsoleDeviceConfiguration), which carry the agent
// and log streams, arrived in macOS 13.
const MinMacOSMajor = 13

// ErrMissingEntitlement means the running binary is not signed with the
// com.apple.security.virtualization entitlement, without which
// Virtualization.framework refuses every configuration.
var ErrMissingEntitlement = errors.New("binary lacks the com.apple.security.virtualization entitlement: " +
	"sign it with `make sign` (codesign -f --entitlements deploy/vz.entitlements -s - BINARY)")

// ErrKilled is a machine's Err after Kill stopped it.
var ErrKilled = errors.New("vz: machine killed")

// Options configure a Driver.
type Options struct {
	// Logger receives state changes; nil means slog.Default().
	Logger *slog.Logger
}

// Driver boots machines with Virtualization.framework. On platforms other
// than macOS (or with the no_vz build tag) every method that would touch
// the framework returns vm.ErrNotSupported.
type Driver struct {
	log *slog.Logger
}

var _ vm.Driver = (*Driver)(nil)

// New returns a Driver.
func New(opts Options) *Driver {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{log: log.With("backend", Name)}
}

// Name implements vm.Driver.
func (d *Driver) Name() string { return Name }

// HostReport describes what this Mac offers, for `doctor` and node status.
type HostReport struct {
	// MacOSVersion is kern.osproductversion, e.g. "14.5".
	MacOSVersion string     `json:"macOSVersion"`
	Limits       HostLimits `json:"limits"`
}
