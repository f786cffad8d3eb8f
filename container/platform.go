package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/vk-applevm/vk-applevm/image"
)

// ErrNoEmulation: the image is for another architecture than the guest and
// this host cannot translate it.
var ErrNoEmulation = errors.New("unsupported image platform")

// RosettaCheck reports whether the hypervisor can share Apple's Rosetta
// translator with arm64 guests (vz on Apple silicon): nil when it can, else
// why not (e.g. vz.ErrRosettaNotInstalled). Runtimes without one offer no
// translation at all.
type RosettaCheck func(ctx context.Context) error

// needsRosetta decides how an image of platform img runs in a guest of
// guestArch: natively (false), through Rosetta (true), or not at all. It
// is called before anything is created, so a container that cannot run
// fails before a VM boots.
func needsRosetta(ctx context.Context, img image.Platform, guestArch string, rosetta RosettaCheck) (bool, error) {
	if img.OS != "" && img.OS != "linux" {
		return false, fmt.Errorf("%w: the image is for %s; the VMs run linux/%s", ErrNoEmulation, img, guestArch)
	}
	// An image config without an architecture says nothing to act on;
	// the guest reports an exec format error if it was wrong.
	if img.Architecture == "" || img.Architecture == guestArch {
		return false, nil
	}
	if img.Architecture == "amd64" && guestArch == "arm64" && rosetta != nil {
		if err := rosetta(ctx); err != nil {
			return false, fmt.Errorf("linux/amd64 images run through Rosetta on this Mac, which is not available: %w", err)
		}
		return true, nil
	}
	return false, fmt.Errorf("%w: linux/%s images need emulation this host does not offer (its VMs run linux/%s)",
		ErrNoEmulation, img.Architecture, guestArch)
}
