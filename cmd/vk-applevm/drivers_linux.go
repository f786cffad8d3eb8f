package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// defaultDriver is the hypervisor backend of this platform.
const defaultDriver = "qemu"

// drivers returns the backends the shim can boot machines with. The QEMU
// driver probes KVM with the guest bundle's floor initrd (the verdict is
// cached), so machines use KVM only where it really works.
func (g *globals) drivers() map[string]vm.Driver {
	opts := qemu.Options{Logger: g.log}
	if b, err := guest.Find(g.guestDir); err == nil && b.FloorInitrd != "" {
		opts.Probe = qemu.ProbeImage{Kernel: b.Kernel, Initrd: b.FloorInitrd}
	}
	d := qemu.New(opts)
	return map[string]vm.Driver{d.Name(): d}
}

// rosettaCheck: QEMU translates nothing; images must match the guest.
func (g *globals) rosettaCheck() container.RosettaCheck { return nil }

// templateStore keeps VM templates under the state root, built by the
// QEMU driver the shims use.
func (g *globals) templateStore(ctx context.Context) (*vmtemplate.Store, error) {
	d := g.drivers()[defaultDriver]
	qd, ok := d.(*qemu.Driver)
	if !ok {
		return nil, fmt.Errorf("--vm-templates: the %s driver is not QEMU's", d.Name())
	}
	s, err := vmtemplate.ForQEMU(ctx, filepath.Join(g.root, "templates"), qd, runtime.GOARCH, g.log)
	if err != nil {
		return nil, fmt.Errorf("--vm-templates: %w", err)
	}
	return s, nil
}
