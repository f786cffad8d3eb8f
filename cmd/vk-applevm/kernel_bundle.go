package main

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/kernelfetch"
)

// vzArch is the only guest architecture vz runs (Apple silicon).
const vzArch = "arm64"

// initrdName is the initrd's file name in a bundle, as `make guest` names it.
const initrdName = "initrd.img"

// checkBundleDirArch refuses a directory that belongs to another
// architecture's bundle — by its bundle.json, or by its name (bin/guest/amd64
// is where `make guest` puts QEMU's) — so that running `kernel fetch` with
// the default --guest on an x86 machine cannot break that bundle.
func checkBundleDirArch(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, guest.ManifestName))
	switch {
	case err == nil:
		var b guest.Bundle
		if err := json.Unmarshal(data, &b); err == nil && b.Arch != "" && b.Arch != vzArch {
			return fmt.Errorf("%s holds an %s guest bundle; kernel fetch installs an %s kernel for vz: choose another directory with --guest",
				dir, b.Arch, vzArch)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read %s: %w", filepath.Join(dir, guest.ManifestName), err)
	}
	switch filepath.Base(dir) {
	case "amd64", "386", "riscv64", "ppc64le", "s390x":
		return fmt.Errorf("%s is named for %s guests; kernel fetch installs an %s kernel for vz: pass --guest %s",
			dir, filepath.Base(dir), vzArch, filepath.Join(filepath.Dir(dir), vzArch))
	}
	return nil
}

// checkAgentBinary accepts a static linux/arm64 executable: the initrd has
// no dynamic loader, and a wrong /init shows only as a kernel panic.
func checkAgentBinary(path string) error {
	f, err := elf.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no arm64 guest agent at %s: build it with `make agent` or pass --agent", path)
	}
	if err != nil {
		return fmt.Errorf("guest agent %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("guest agent %s is for %v, not linux/arm64: build it with `make agent` (GOARCH=arm64)", path, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("guest agent %s is not an executable (ELF type %v)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("guest agent %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// writeVZBundle assembles initrd.img from the agent (no modules: the
// pinned kernel has virtio built in) and writes bundle.json for the kernel
// Fetch installed. Each file is replaced atomically, bundle.json last, so
// an interrupted run leaves the previous bundle usable.
func writeVZBundle(dir string, res kernelfetch.Result, agent string) (guest.Bundle, error) {
	release := res.KernelRelease
	if release == "" {
		// A local --kernel without a version banner; bundle.json needs a
		// release, and nothing in the vz path reads it.
		release = "unknown"
	}
	b := guest.Bundle{Arch: vzArch, Kernel: res.Path, Initrd: filepath.Join(dir, initrdName), KernelRelease: release}
	tmp, err := os.CreateTemp(dir, "."+initrdName+".*")
	if err != nil {
		return guest.Bundle{}, fmt.Errorf("assemble initrd: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := guest.WriteInitrd(tmp.Name(), agent, nil); err != nil {
		return guest.Bundle{}, fmt.Errorf("assemble initrd from %s: %w", agent, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return guest.Bundle{}, fmt.Errorf("assemble initrd: %w", err)
	}
	if err := os.Rename(tmp.Name(), b.Initrd); err != nil {
		return guest.Bundle{}, fmt.Errorf("install initrd: %w", err)
	}
	if err := b.WriteManifest(dir); err != nil {
		return guest.Bundle{}, err
	}
	return b, nil
}
