package main

import (
	"log/slog"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// drivers returns the backends the shim boots machines with, as the node's
// own (cmd/vk-applevm/drivers_linux.go): QEMU probes KVM with the guest
// bundle's floor initrd (the verdict is cached), so machines use KVM only
// where it really works.
func drivers(log *slog.Logger, guestDir string) map[string]vm.Driver {
	opts := qemu.Options{Logger: log}
	if b, err := guest.Find(guestDir); err == nil && b.FloorInitrd != "" {
		opts.Probe = qemu.ProbeImage{Kernel: b.Kernel, Initrd: b.FloorInitrd}
	}
	d := qemu.New(opts)
	return map[string]vm.Driver{d.Name(): d}
}
