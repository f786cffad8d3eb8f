package vmtemplate

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// ForQEMU returns a store in dir whose templates d builds. A state loads
// only into the QEMU binary that wrote it, under the same accelerator, so
// both are part of every shape; d decides on the accelerator as the shims'
// drivers do (the verdict is cached per host).
func ForQEMU(ctx context.Context, dir string, d *qemu.Driver, arch string, log *slog.Logger) (*Store, error) {
	bin, err := d.Binary(arch)
	if err != nil {
		return nil, fmt.Errorf("VM templates: %w", err)
	}
	accel, err := d.Accelerator(ctx)
	if err != nil {
		return nil, fmt.Errorf("VM templates: %w", err)
	}
	return New(Options{Dir: dir, Driver: d, Stamps: []string{bin}, Variant: string(accel.Accel), Logger: log})
}
