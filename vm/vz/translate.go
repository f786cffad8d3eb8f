package vz

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/vz/kernelformat"
)

// RosettaTag is the virtio-fs tag of the Rosetta share; the guest mounts it
// and registers the translator with binfmt_misc.
const RosettaTag = "rosetta"

// ErrRosettaNotInstalled is returned when a spec asks for Rosetta on a Mac
// where it is supported but not installed.
var ErrRosettaNotInstalled = errors.New("Rosetta is not installed: softwareupdate --install-rosetta")

// kernelArgs are what the backend adds to spec.Cmdline:
//   - console=hvc0: the serial-port console device is a single-port virtio
//     console whose port 0 Linux registers as hvc0; the named ports sit on
//     a separate multiport device and none is marked as a console, so hvc0
//     always means the console log.
//   - panic=-1: a panicking guest reboots at once, and a vz guest that
//     reboots stops, so the shim sees the machine end instead of a hang.
const (
	consoleArg = "console=hvc0"
	panicArg   = "panic=-1"
)

// Disk caching and synchronization (VZDiskImageStorageDeviceAttachment).
//
// Caching is "cached" for every disk: with automatic (and uncached) caching,
// ext4 images written by arm64 Linux guests were corrupted
// (utmapp/UTM#4840, comments 1824340975 and 1824542732); Lima pins
// DiskImageCachingModeCached for the same reason (its diskImageCachingMode).
// For the read-only rootfs it also lets every VM that runs the same image
// share one copy in the host page cache.
//
// Synchronization:
//   - writable (scratch) disks: fsync. A guest flush reaches the file with
//     fsync(2), so data survives the VM or shim process dying — all a
//     container's scratch layer needs, since it is discarded with the
//     container. "full" (F_FULLFSYNC) would also drain the drive's cache on
//     every flush, costing far more per journal commit for no benefit to
//     throwaway data. Lima uses the same pair for its writable disk.
//   - read-only disks: none. The guest cannot write, so there is nothing to
//     flush.
const (
	diskCaching      = CachingCached
	writableDiskSync = SyncFsync
	readOnlyDiskSync = SyncNone
	bytesPerMiB      = 1 << 20
)

// Describe turns spec into the vz devices and settings that run it on a
// host with the given limits. It reads the kernel's header (to reject a
// compressed kernel before vz fails obscurely) and nothing else. All
// problems are reported together; each error wraps vm.ErrInvalidSpec,
// vm.ErrNotSupported, kernelformat.ErrNotArm64Image or
// ErrRosettaNotInstalled.
func Describe(spec vm.Spec, host HostLimits) (*Config, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	fail := func(err error) { errs = append(errs, err) }

	if spec.Arch != "arm64" {
		fail(fmt.Errorf("%w: arch %s: vz runs arm64 guests only (Apple silicon)", vm.ErrInvalidSpec, spec.Arch))
	}
	if spec.RestoreFrom != "" {
		// vz has saveMachineStateTo/restoreMachineStateFrom (macOS 14),
		// untried here; under vz a boot is what TCG's restore replaces.
		fail(fmt.Errorf("%w: restoring a saved machine (%s) is a QEMU feature here", vm.ErrNotSupported, spec.RestoreFrom))
	}
	if err := kernelformat.CheckFile(spec.Kernel); err != nil {
		fail(err)
	}
	cpus, err := describeCPUs(spec.CPUs, host)
	if err != nil {
		fail(err)
	}
	memory, err := describeMemory(spec.MemoryMiB, host)
	if err != nil {
		fail(err)
	}

	cfg := &Config{
		Boot: LinuxBoot{
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: describeCmdline(spec.Cmdline),
		},
		CPUs:             cpus,
		MemoryBytes:      memory,
		SerialLog:        spec.ConsoleLog,
		SerialLogMaxSize: spec.ConsoleLogMaxSize,
		Entropy:          true,
		Balloon:          true,
	}
	for _, d := range spec.Disks {
		cfg.Disks = append(cfg.Disks, describeDisk(d))
	}
	for _, p := range spec.Ports {
		cfg.ConsolePorts = append(cfg.ConsolePorts, ConsolePort{Name: p})
	}
	for i, n := range spec.NICs {
		nic, err := describeNIC(i, n)
		if err != nil {
			fail(err)
			continue
		}
		cfg.NICs = append(cfg.NICs, nic)
	}
	for _, s := range spec.Shares {
		if spec.Rosetta && s.Tag == RosettaTag {
			fail(fmt.Errorf("%w: share tag %q is reserved for Rosetta", vm.ErrInvalidSpec, RosettaTag))
			continue
		}
		cfg.Shares = append(cfg.Shares, DirectoryShare{Tag: s.Tag, HostPath: s.HostPath, ReadOnly: s.ReadOnly})
	}
	if spec.Rosetta {
		if err := checkRosetta(host.Rosetta); err != nil {
			fail(err)
		} else {
			cfg.Rosetta = &RosettaShare{Tag: RosettaTag}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("vz: describe machine %s: %w", spec.ID, errors.Join(errs...))
	}
	return cfg, nil
}

func describeCPUs(n int, host HostLimits) (uint, error) {
	if host.MaxCPUs == 0 {
		return 0, fmt.Errorf("%w: host CPU limits unknown (maximum is 0)", vm.ErrInvalidSpec)
	}
	// spec.Validate guarantees n >= 1.
	cpus := uint(n)
	if cpus < host.MinCPUs || cpus > host.MaxCPUs {
		return 0, fmt.Errorf("%w: %d CPUs: this Mac allows %d to %d per machine",
			vm.ErrInvalidSpec, n, host.MinCPUs, host.MaxCPUs)
	}
	return cpus, nil
}

// describeMemory converts MiB to bytes; vz requires the size to be a
// multiple of 1 MiB (VZVirtualMachineConfiguration.memorySize), which a MiB
// count always is, and to lie within the host's bounds.
func describeMemory(mib uint64, host HostLimits) (uint64, error) {
	if host.MaxMemoryBytes == 0 {
		return 0, fmt.Errorf("%w: host memory limits unknown (maximum is 0)", vm.ErrInvalidSpec)
	}
	if mib > math.MaxUint64/bytesPerMiB {
		return 0, fmt.Errorf("%w: %d MiB of memory overflows", vm.ErrInvalidSpec, mib)
	}
	bytes := mib * bytesPerMiB
	if bytes < host.MinMemoryBytes || bytes > host.MaxMemoryBytes {
		return 0, fmt.Errorf("%w: %d MiB of memory: this Mac allows %d to %d MiB per machine",
			vm.ErrInvalidSpec, mib, ceilMiB(host.MinMemoryBytes), host.MaxMemoryBytes/bytesPerMiB)
	}
	return bytes, nil
}

func ceilMiB(b uint64) uint64 { return (b + bytesPerMiB - 1) / bytesPerMiB }

// describeCmdline appends the backend's arguments. A spec that already sets
// panic= keeps its own choice.
func describeCmdline(cmdline string) string {
	args := strings.Fields(cmdline)
	args = append(args, consoleArg)
	if !hasParam(args, "panic") {
		args = append(args, panicArg)
	}
	return strings.Join(args, " ")
}

func hasParam(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func describeDisk(d vm.Disk) BlockDevice {
	sync := writableDiskSync
	if d.ReadOnly {
		sync = readOnlyDiskSync
	}
	// vm.Spec.Validate bounds serials to 20 ASCII characters, which is
	// exactly what blockDeviceIdentifier accepts.
	return BlockDevice{
		Path:       d.Path,
		ReadOnly:   d.ReadOnly,
		Identifier: d.Serial,
		Caching:    diskCaching,
		Sync:       sync,
	}
}

func describeNIC(i int, n vm.NIC) (NetworkDevice, error) {
	switch n.Attachment.Kind {
	case vm.AttachSwitch:
		return NetworkDevice{Kind: NetworkFileHandle, MAC: n.MAC, File: n.Attachment.File, MTU: n.MTU}, nil
	case vm.AttachTap:
		return NetworkDevice{}, fmt.Errorf("nic %d: tap attachment %q: %w: macOS has no tap devices; plug the NIC into the switch",
			i, n.Attachment.Tap, vm.ErrNotSupported)
	}
	// Validate rejects unknown kinds; this guards against a new kind
	// added to vm without a vz translation.
	return NetworkDevice{}, fmt.Errorf("nic %d: attachment kind %q: %w by the vz backend", i, n.Attachment.Kind, vm.ErrNotSupported)
}

// Err is nil when Rosetta can be shared with guests, else why not:
// ErrRosettaNotInstalled, or vm.ErrNotSupported (an Intel Mac, macOS
// before 13).
func (a RosettaAvailability) Err() error { return checkRosetta(a) }

func checkRosetta(a RosettaAvailability) error {
	switch a {
	case RosettaInstalled:
		return nil
	case RosettaNotInstalled:
		return ErrRosettaNotInstalled
	}
	return fmt.Errorf("rosetta (availability %q): %w: Rosetta for Linux needs Apple silicon and macOS 13 or later", a, vm.ErrNotSupported)
}
