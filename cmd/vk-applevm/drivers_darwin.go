package main

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/vz"
)

const defaultDriver = "vz"

// drivers returns the backends the shim can boot machines with.
func (g *globals) drivers() map[string]vm.Driver {
	d := vz.New(vz.Options{Logger: g.log})
	return map[string]vm.Driver{d.Name(): d}
}

// rosettaCheck: vz shares Rosetta with arm64 guests on Apple silicon, when
// it is installed, so linux/amd64 images run there.
func (g *globals) rosettaCheck() container.RosettaCheck {
	d := vz.New(vz.Options{Logger: g.log})
	return func(ctx context.Context) error {
		report, err := d.Host(ctx)
		if err != nil {
			return err
		}
		return report.Limits.Rosetta.Err()
	}
}

// templateStore: vz's save and restore (macOS 14) is not wired; see
// docs/mac-pitfalls.md.
func (g *globals) templateStore(context.Context) (*vmtemplate.Store, error) {
	return nil, fmt.Errorf("--vm-templates: %w on vz (resuming saved machines is wired for QEMU only)", vm.ErrNotSupported)
}
