package main

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/debbin"
)

// applets are the busybox commands the checks run, for images built where
// busybox cannot list its own (a Mac).
var applets = []string{
	"bin/sh", "bin/echo", "bin/cat", "bin/sleep", "bin/mkdir", "bin/chown", "bin/stat", "bin/uname",
	"bin/true", "usr/bin/wget", "usr/sbin/httpd",
}

// busyboxImages builds the busybox image for the guest's architecture and,
// when rosetta is set, a linux/amd64 one: on Linux from the installed
// busybox-static (as the tests do), on a Mac from Debian's pinned packages
// (internal/debbin), which a Mac can neither install nor run.
func busyboxImages(ctx context.Context, guestArch string, rosetta bool) (native, amd64 v1.Image, err error) {
	if runtime.GOOS == "linux" {
		native, err = imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
		return native, nil, err
	}
	if native, err = debianBusybox(ctx, guestArch); err != nil {
		return nil, nil, err
	}
	if rosetta {
		if amd64, err = debianBusybox(ctx, "amd64"); err != nil {
			return nil, nil, err
		}
	}
	return native, amd64, nil
}

func debianBusybox(ctx context.Context, arch string) (v1.Image, error) {
	pkg, ok := debbin.BusyboxStatic[arch]
	if !ok {
		return nil, fmt.Errorf("no pinned busybox for linux/%s", arch)
	}
	bin, err := debbin.Cached(ctx, nil, pkg, filepath.Join(imagetest.DefaultCacheDir(), "debian"))
	if err != nil {
		return nil, fmt.Errorf("busybox for linux/%s: %w", arch, err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox %s: %w", bin, err)
	}
	machine := f.Machine
	f.Close()
	if want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[arch]; machine != want {
		return nil, fmt.Errorf("busybox %s is %v, want %v", bin, machine, want)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	return imagetest.BusyboxFor(data, arch, applets)
}
