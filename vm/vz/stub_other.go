//go:build !darwin || no_vz

package vz

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Check implements vm.Driver: Virtualization.framework exists only on macOS.
func (d *Driver) Check(ctx context.Context) error {
	return fmt.Errorf("vz: %w (Virtualization.framework is macOS-only)", vm.ErrNotSupported)
}

// Start implements vm.Driver; it always fails off macOS.
func (d *Driver) Start(ctx context.Context, spec vm.Spec, dir string) (vm.Machine, error) {
	return nil, fmt.Errorf("vz: start %s: %w (Virtualization.framework is macOS-only)", spec.ID, vm.ErrNotSupported)
}

// Host reports nothing off macOS.
func (d *Driver) Host(ctx context.Context) (HostReport, error) {
	return HostReport{}, fmt.Errorf("vz: %w (Virtualization.framework is macOS-only)", vm.ErrNotSupported)
}
