package container

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
)

var errNotInstalled = errors.New("Rosetta is not installed: softwareupdate --install-rosetta")

func TestNeedsRosetta(t *testing.T) {
	installed := RosettaCheck(func(context.Context) error { return nil })
	notInstalled := RosettaCheck(func(context.Context) error { return errNotInstalled })
	for _, tc := range []struct {
		name      string
		img       image.Platform
		guestArch string
		rosetta   RosettaCheck
		want      bool
		wantErr   string
		wantIs    error
	}{
		{name: "native arm64 on a Mac", img: image.Platform{OS: "linux", Architecture: "arm64"}, guestArch: "arm64", rosetta: installed},
		{name: "native amd64 under QEMU", img: image.Platform{OS: "linux", Architecture: "amd64"}, guestArch: "amd64"},
		{name: "arm64 variant v8", img: image.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, guestArch: "arm64"},
		{name: "no architecture in the config", img: image.Platform{}, guestArch: "amd64"},
		{name: "amd64 on Apple silicon with Rosetta", img: image.Platform{OS: "linux", Architecture: "amd64"}, guestArch: "arm64",
			rosetta: installed, want: true},
		{name: "amd64 on Apple silicon without Rosetta installed", img: image.Platform{OS: "linux", Architecture: "amd64"}, guestArch: "arm64",
			rosetta: notInstalled, wantErr: "softwareupdate --install-rosetta", wantIs: errNotInstalled},
		{name: "amd64 on an arm64 host without vz", img: image.Platform{OS: "linux", Architecture: "amd64"}, guestArch: "arm64",
			wantErr: "linux/amd64 images need emulation this host does not offer (its VMs run linux/arm64)", wantIs: ErrNoEmulation},
		{name: "arm64 on Linux/QEMU", img: image.Platform{OS: "linux", Architecture: "arm64"}, guestArch: "amd64",
			wantErr: "linux/arm64 images need emulation this host does not offer (its VMs run linux/amd64)", wantIs: ErrNoEmulation},
		{name: "arm64 on Linux even with a Rosetta check", img: image.Platform{OS: "linux", Architecture: "arm64"}, guestArch: "amd64",
			rosetta: installed, wantErr: "linux/arm64 images need emulation", wantIs: ErrNoEmulation},
		{name: "riscv64 on a Mac", img: image.Platform{OS: "linux", Architecture: "riscv64"}, guestArch: "arm64",
			rosetta: installed, wantErr: "linux/riscv64 images need emulation", wantIs: ErrNoEmulation},
		{name: "windows image", img: image.Platform{OS: "windows", Architecture: "amd64"}, guestArch: "amd64",
			wantErr: "the image is for windows/amd64", wantIs: ErrNoEmulation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := needsRosetta(context.Background(), tc.img, tc.guestArch, tc.rosetta)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("needsRosetta = %v, %v; want %v, nil", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, tc.wantIs) || got {
				t.Fatalf("needsRosetta = %v, %v; want an error wrapping %v containing %q", got, err, tc.wantIs, tc.wantErr)
			}
		})
	}
}
