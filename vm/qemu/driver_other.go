//go:build !linux

package qemu

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Driver is a stub on platforms other than Linux; every call fails with
// vm.ErrNotSupported.
type Driver struct{}

var _ vm.Driver = (*Driver)(nil)

// New returns the stub driver.
func New(Options) *Driver { return &Driver{} }

// Name implements vm.Driver.
func (d *Driver) Name() string { return "qemu" }

// Check implements vm.Driver.
func (d *Driver) Check(context.Context) error {
	return fmt.Errorf("qemu backend: %w", vm.ErrNotSupported)
}

// Start implements vm.Driver.
func (d *Driver) Start(context.Context, vm.Spec, string) (vm.Machine, error) {
	return nil, fmt.Errorf("qemu backend: %w", vm.ErrNotSupported)
}

// Accelerator reports that no accelerator is available here.
func (d *Driver) Accelerator(context.Context) (Verdict, error) {
	return Verdict{}, fmt.Errorf("qemu backend: %w", vm.ErrNotSupported)
}
