// Package vz is the macOS backend: it boots each vm.Spec as a
// Virtualization.framework machine through github.com/Code-Hex/vz/v3.
//
// The package is split so that nearly all of it is tested on Linux:
//   - config.go and translate.go (no build tag, no vz import) turn a
//     vm.Spec and the host's limits into a Config, a plain description of
//     vz devices and settings; every decision (cmdline, limits, device
//     list, caching modes, port names) is made and tested there.
//   - machine.go and ends.go hold the running machine's logic (one owner
//     goroutine for every vz call and state change, stop requests, the
//     console ports' pipes, NIC sockets) behind a small interface that
//     *vz.VirtualMachine satisfies, so it is tested with a fake.
//   - *_darwin.go (build tag darwin && !no_vz) only turn a Config into vz
//     calls, one attachX per device class, and read the host's limits.
//     hack/checkdarwin type-checks them against the real vz API from Linux.
//   - stub_other.go gives other platforms a Driver that returns
//     vm.ErrNotSupported.
//
// Every binary that calls into this package on macOS must be signed with the
// com.apple.security.virtualization entitlement (deploy/vz.entitlements,
// `make sign`); Check reports a clear error when it is missing.
package vz

import "os"

// HostLimits is what this Mac allows a virtual machine, read from
// Virtualization.framework on darwin (VZVirtualMachineConfiguration's
// minimum/maximumAllowedCPUCount and minimum/maximumAllowedMemorySize) and
// passed to Describe as data so the translation is tested anywhere.
type HostLimits struct {
	MinCPUs        uint   `json:"minCPUs"`
	MaxCPUs        uint   `json:"maxCPUs"`
	MinMemoryBytes uint64 `json:"minMemoryBytes"`
	MaxMemoryBytes uint64 `json:"maxMemoryBytes"`
	// Rosetta says whether Apple's Rosetta translator can be shared with
	// guests (VZLinuxRosettaDirectoryShare.availability).
	Rosetta RosettaAvailability `json:"rosetta"`
}

// RosettaAvailability mirrors VZLinuxRosettaAvailability.
type RosettaAvailability string

const (
	RosettaNotSupported RosettaAvailability = "not-supported"
	RosettaNotInstalled RosettaAvailability = "not-installed"
	RosettaInstalled    RosettaAvailability = "installed"
)

// Config is a plain description of one vz machine: what the darwin glue
// creates, in order. Paths are host paths.
type Config struct {
	Boot        LinuxBoot `json:"boot"`
	CPUs        uint      `json:"cpus"`
	MemoryBytes uint64    `json:"memoryBytes"`
	// Disks become virtio-blk devices in this order.
	Disks []BlockDevice `json:"disks,omitempty"`
	// ConsolePorts are the named ports of one multiport virtio console
	// device (VZVirtioConsoleDeviceConfiguration), in spec order.
	ConsolePorts []ConsolePort `json:"consolePorts,omitempty"`
	// SerialLog is the file the guest's hvc0 console is appended to
	// (a VZVirtioConsoleDeviceSerialPortConfiguration, a device of its own,
	// attached to a pipe the shim drains into the capped log).
	SerialLog string `json:"serialLog"`
	// SerialLogMaxSize caps SerialLog (0: consolelog.DefaultMaxSize); one
	// previous file is kept.
	SerialLogMaxSize int64 `json:"serialLogMaxSize,omitempty"`
	// Entropy adds a virtio-rng device so the guest's CRNG seeds at once
	// instead of stalling early boot.
	Entropy bool `json:"entropy"`
	// Balloon adds a traditional virtio memory balloon, through which the
	// host can reclaim guest memory later.
	Balloon bool             `json:"balloon"`
	NICs    []NetworkDevice  `json:"nics,omitempty"`
	Shares  []DirectoryShare `json:"shares,omitempty"`
	// Rosetta, when set, shares Apple's Rosetta translator with the guest.
	Rosetta *RosettaShare `json:"rosetta,omitempty"`
}

// LinuxBoot is a VZLinuxBootLoader.
type LinuxBoot struct {
	// Kernel is an uncompressed arm64 Image.
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
}

// CachingMode is VZDiskImageCachingMode.
type CachingMode string

const (
	CachingAutomatic CachingMode = "automatic"
	CachingUncached  CachingMode = "uncached"
	CachingCached    CachingMode = "cached"
)

// SyncMode is VZDiskImageSynchronizationMode.
type SyncMode string

const (
	// SyncFull issues F_FULLFSYNC for each guest flush: data reaches
	// stable storage, at the cost of draining the drive's cache.
	SyncFull SyncMode = "full"
	// SyncFsync issues fsync(2): data survives the VM process, and a
	// power loss only if the drive's cache does.
	SyncFsync SyncMode = "fsync"
	// SyncNone ignores guest flushes.
	SyncNone SyncMode = "none"
)

// BlockDevice is a VZVirtioBlockDeviceConfiguration over a
// VZDiskImageStorageDeviceAttachment.
type BlockDevice struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly"`
	// Identifier is the virtio-blk serial (blockDeviceIdentifier, macOS
	// 12.3+): the guest finds the disk under /sys/block/*/serial, as it
	// does under QEMU's serial=.
	Identifier string      `json:"identifier"`
	Caching    CachingMode `json:"caching"`
	Sync       SyncMode    `json:"sync"`
}

// ConsolePort is one VZVirtioConsolePortConfiguration. Its host end is a
// pair of pipes (VZFileHandleSerialPortAttachment) handed out by
// Machine.Port.
type ConsolePort struct {
	// Name is what the guest reads from /sys/class/virtio-ports/*/name,
	// the same name QEMU's virtserialport,name= gives.
	Name string `json:"name"`
}

// NetworkKind says which vz attachment a NIC uses.
type NetworkKind string

const (
	// NetworkFileHandle is VZFileHandleNetworkDeviceAttachment on the
	// shim's end of a datagram socket pair into the node's switch (the same
	// cable QEMU gets as a dgram netdev). vz's NAT attachment is not used:
	// it isolates VMs from each other and leases addresses for a day
	// (mac-pitfalls.md).
	NetworkFileHandle NetworkKind = "file-handle"
)

// NetworkDevice is a VZVirtioNetworkDeviceConfiguration.
type NetworkDevice struct {
	Kind NetworkKind `json:"kind"`
	MAC  string      `json:"mac"`
	// File is the socket vz reads and writes frames on (NetworkFileHandle),
	// from vm.Attachment.File; not part of the description's JSON.
	File *os.File `json:"-"`
	// MTU of the file-handle attachment (0: vz's default, 1500).
	MTU int `json:"mtu,omitempty"`
}

// DirectoryShare is a VZVirtioFileSystemDeviceConfiguration with a single
// directory share; the guest mounts it with `mount -t virtiofs <tag>`.
type DirectoryShare struct {
	Tag      string `json:"tag"`
	HostPath string `json:"hostPath"`
	ReadOnly bool   `json:"readOnly"`
}

// RosettaShare is a virtio-fs device sharing VZLinuxRosettaDirectoryShare.
type RosettaShare struct {
	Tag string `json:"tag"`
}
