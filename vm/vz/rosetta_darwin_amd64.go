//go:build darwin && amd64 && !no_vz

package vz

import (
	"fmt"

	"github.com/Code-Hex/vz/v3"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Rosetta for Linux exists only on Apple silicon; vz exposes its API only on
// darwin/arm64.
func rosettaAvailability() RosettaAvailability { return RosettaNotSupported }

func newRosettaDevice(share *RosettaShare) (vz.DirectorySharingDeviceConfiguration, error) {
	return nil, fmt.Errorf("rosetta share: %w on Intel Macs", vm.ErrNotSupported)
}
