//go:build darwin && arm64 && !no_vz

package vz

import (
	"fmt"

	"github.com/Code-Hex/vz/v3"
)

func rosettaAvailability() RosettaAvailability {
	switch vz.LinuxRosettaDirectoryShareAvailability() {
	case vz.LinuxRosettaAvailabilityInstalled:
		return RosettaInstalled
	case vz.LinuxRosettaAvailabilityNotInstalled:
		return RosettaNotInstalled
	}
	return RosettaNotSupported
}

// newRosettaDevice shares Rosetta under share.Tag; Describe has already
// checked that Rosetta is installed.
func newRosettaDevice(share *RosettaShare) (vz.DirectorySharingDeviceConfiguration, error) {
	rosetta, err := vz.NewLinuxRosettaDirectoryShare()
	if err != nil {
		return nil, fmt.Errorf("rosetta share: %w", err)
	}
	device, err := vz.NewVirtioFileSystemDeviceConfiguration(share.Tag)
	if err != nil {
		return nil, fmt.Errorf("rosetta virtio-fs device %q: %w", share.Tag, err)
	}
	device.SetDirectoryShare(rosetta)
	return device, nil
}
