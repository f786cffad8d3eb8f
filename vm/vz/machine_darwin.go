//go:build darwin && !no_vz

package vz

import (
	"context"
	"errors"
	"fmt"

	"github.com/Code-Hex/vz/v3"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Start implements vm.Driver. The machine runs inside this process (the
// per-VM shim), so it ends when the process does.
func (d *Driver) Start(ctx context.Context, spec vm.Spec, dir string) (vm.Machine, error) {
	cfg, err := Describe(spec, hostLimits())
	if err != nil {
		return nil, err
	}
	config, ends, err := configure(cfg, dir)
	if err != nil {
		return nil, fmt.Errorf("vz: configure machine %s: %w", spec.ID, err)
	}
	if err := validate(config); err != nil {
		ends.closeAll()
		return nil, fmt.Errorf("machine %s: %w", spec.ID, err)
	}
	v, err := vz.NewVirtualMachine(config)
	if err != nil {
		ends.closeAll()
		return nil, fmt.Errorf("vz: create machine %s: %w", spec.ID, err)
	}
	m, err := startMachine(ctx, d.log.With("vm", spec.ID), vzMachine{v}, classifyState, ends)
	if err != nil {
		return nil, fmt.Errorf("vz: machine %s: %w", spec.ID, err)
	}
	return m, nil
}

// vzMachine adapts *vz.VirtualMachine to hypervisor: only Start differs
// (it takes options).
type vzMachine struct{ *vz.VirtualMachine }

func (v vzMachine) Start() error { return v.VirtualMachine.Start() }

// SetBalloonTarget sets the target of the machine's traditional memory
// balloon (Describe always configures one).
func (v vzMachine) SetBalloonTarget(bytes uint64) error {
	for _, d := range v.MemoryBalloonDevices() {
		if b := vz.AsVirtioTraditionalMemoryBalloonDevice(d); b != nil {
			b.SetTargetVirtualMachineMemorySize(bytes)
			return nil
		}
	}
	return errors.New("vz: the machine has no traditional memory balloon")
}

var _ hypervisor[vz.VirtualMachineState] = vzMachine{}

func classifyState(s vz.VirtualMachineState) stateClass {
	switch s {
	case vz.VirtualMachineStateStopped:
		return stateStopped
	case vz.VirtualMachineStateError:
		return stateFailed
	}
	return stateTransient
}
