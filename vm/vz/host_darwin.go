//go:build darwin && !no_vz

package vz

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/Code-Hex/vz/v3"
	"golang.org/x/sys/unix"
)

// Host implements the optional host report: macOS version, vz limits and
// Rosetta availability.
func (d *Driver) Host(ctx context.Context) (HostReport, error) {
	version, err := syscall.Sysctl("kern.osproductversion")
	if err != nil {
		return HostReport{}, fmt.Errorf("vz: read macOS version (sysctl kern.osproductversion): %w", err)
	}
	return HostReport{MacOSVersion: version, Limits: hostLimits()}, nil
}

// hostLimits reads the framework's bounds; they are class properties, so
// they need no entitlement.
func hostLimits() HostLimits {
	return HostLimits{
		MinCPUs:        vz.VirtualMachineConfigurationMinimumAllowedCPUCount(),
		MaxCPUs:        vz.VirtualMachineConfigurationMaximumAllowedCPUCount(),
		MinMemoryBytes: vz.VirtualMachineConfigurationMinimumAllowedMemorySize(),
		MaxMemoryBytes: vz.VirtualMachineConfigurationMaximumAllowedMemorySize(),
		Rosetta:        rosettaAvailability(),
	}
}

// Check implements vm.Driver: Apple silicon, macOS 13 or later, and a minimal machine
// configuration that validates — which fails when the binary lacks the
// virtualization entitlement or the hardware offers no virtualization
// (for example inside a VM without nested virtualization).
func (d *Driver) Check(ctx context.Context) error {
	// hw.optional.arm64 is absent on Intel Macs: treat a failed read as no.
	arm64, _ := unix.SysctlUint32("hw.optional.arm64")
	if err := checkCPU(arm64 == 1); err != nil {
		return err
	}
	report, err := d.Host(ctx)
	if err != nil {
		return err
	}
	major, err := strconv.Atoi(strings.SplitN(report.MacOSVersion, ".", 2)[0])
	if err != nil {
		return fmt.Errorf("vz: parse macOS version %q: %w", report.MacOSVersion, err)
	}
	if major < MinMacOSMajor {
		return fmt.Errorf("vz: macOS %s is too old: named virtio console ports need macOS %d or later",
			report.MacOSVersion, MinMacOSMajor)
	}
	if err := validateProbe(report.Limits); err != nil {
		return err
	}
	d.log.DebugContext(ctx, "vz host ready", "macOS", report.MacOSVersion,
		"maxCPUs", report.Limits.MaxCPUs, "maxMemoryBytes", report.Limits.MaxMemoryBytes,
		"rosetta", report.Limits.Rosetta)
	return nil
}

// validateProbe validates the smallest Linux machine this host allows. The
// kernel may be empty: validation does not read it (Code-Hex/vz's own
// tests validate a configuration over an empty temp file).
func validateProbe(limits HostLimits) error {
	kernel, err := os.CreateTemp("", "vkav-vz-probe-*")
	if err != nil {
		return fmt.Errorf("vz: create probe kernel: %w", err)
	}
	kernel.Close()
	defer os.Remove(kernel.Name())

	boot, err := vz.NewLinuxBootLoader(kernel.Name())
	if err != nil {
		return fmt.Errorf("vz: probe boot loader: %w", err)
	}
	memory := ceilMiB(limits.MinMemoryBytes) * bytesPerMiB
	config, err := vz.NewVirtualMachineConfiguration(boot, limits.MinCPUs, memory)
	if err != nil {
		return fmt.Errorf("vz: probe configuration: %w", err)
	}
	return validate(config)
}

// validate runs the framework's validation and names the missing
// entitlement when that is the cause.
func validate(config *vz.VirtualMachineConfiguration) error {
	ok, err := config.Validate()
	if err != nil {
		if isEntitlementError(err.Error()) {
			return fmt.Errorf("vz: %w (framework said: %v)", ErrMissingEntitlement, err)
		}
		return fmt.Errorf("vz: validate machine configuration: %w", err)
	}
	if !ok {
		return fmt.Errorf("vz: machine configuration is invalid (no reason given)")
	}
	return nil
}
