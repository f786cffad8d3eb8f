// Package vm describes a lightweight Linux virtual machine as plain data and
// declares the small interface every hypervisor backend implements.
//
// This package must not import a hypervisor binding (Code-Hex/vz, QEMU
// helpers): it cross-compiles everywhere and is what the provider, the CLI
// and the per-VM shim share. Backends (vm/qemu, vm/vz) translate a Spec into
// their own terms.
package vm

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/vk-applevm/vk-applevm/vm/consolelog"
)

// Well-known names shared by the host side and the guest agent. The guest
// finds its ports by name under /sys/class/virtio-ports/*/name and its disks
// by serial under /sys/block/*/serial, so both backends (QEMU virtserialport
// and virtio-blk serial=; vz console port names and block device
// identifiers) present the same names and the agent needs no per-backend code.
const (
	// AgentPort carries the multiplexed agent API (gRPC over yamux streams).
	AgentPort = "vkav.agent"
	// LogPort carries framed container stdout/stderr from guest to host.
	LogPort = "vkav.log"
	// DiskRootfs is the read-only ext4 image of the container image.
	DiskRootfs = "vkav-rootfs"
	// DiskScratch is the writable ext4 disk holding the overlay upper layer.
	DiskScratch = "vkav-scratch"
)

// Spec is everything a backend needs to boot one machine. It is persisted as
// JSON in the machine's state directory, so fields are plain data.
type Spec struct {
	// ID names the machine; it is short so unix socket paths stay under the
	// 108-byte sun_path limit.
	ID string `json:"id"`
	// Arch is the guest architecture: "amd64" or "arm64".
	Arch string `json:"arch"`
	// Kernel is the path of the kernel: bzImage/vmlinuz on x86_64 (QEMU),
	// an uncompressed arm64 Image under vz.
	Kernel string `json:"kernel"`
	// Initrd is the path of the initial ramdisk holding the guest agent.
	Initrd string `json:"initrd"`
	// Cmdline is the kernel command line, without the console argument,
	// which the backend adds because the console device is its choice.
	Cmdline string `json:"cmdline,omitempty"`
	// CPUs is the number of virtual CPUs.
	CPUs int `json:"cpus"`
	// MemoryMiB is the guest memory size in MiB.
	MemoryMiB uint64 `json:"memoryMiB"`
	// Disks are virtio block devices, in order.
	Disks []Disk `json:"disks,omitempty"`
	// Shares are host directories exported to the guest over virtio-fs
	// (virtiofsd under QEMU, vz's shared directories); the guest mounts
	// them by tag.
	Shares []Share `json:"shares,omitempty"`
	// NICs are virtio network interfaces.
	NICs []NIC `json:"nics,omitempty"`
	// Ports are the named virtio console ports; each is connected to a unix
	// socket in the state directory that the shim owns (see Port).
	Ports []string `json:"ports,omitempty"`
	// ConsoleLog is the file the guest's kernel console is written to. It
	// is capped and rotated (vm/consolelog): at most ConsoleLogMaxSize
	// bytes, and one previous file, ConsoleLog + ".1".
	ConsoleLog string `json:"consoleLog"`
	// ConsoleLogMaxSize caps ConsoleLog in bytes; 0 means
	// consolelog.DefaultMaxSize.
	ConsoleLogMaxSize int64 `json:"consoleLogMaxSize,omitempty"`
	// Rosetta exposes Apple's Rosetta translator to the guest (vz only).
	Rosetta bool `json:"rosetta,omitempty"`
	// RestoreFrom is a machine state written by Saver.Save from a machine
	// of the same shape (devices, memory, CPUs, kernel and initrd): the
	// backend resumes that guest instead of booting the kernel. Disk and
	// NIC backends are this spec's own; the guest must not have bound
	// their drivers before it was saved.
	RestoreFrom string `json:"restoreFrom,omitempty"`
}

// Disk is one virtio block device backed by a raw image file.
type Disk struct {
	// Serial identifies the disk to the guest (at most 20 bytes: the
	// virtio-blk serial field).
	Serial   string `json:"serial"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Discard passes the guest's discards (TRIM) to the image, which
	// frees the blocks of a sparse file (QEMU discard=unmap). vz has no
	// such setting in the API the driver uses: there the file keeps
	// the blocks the guest ever wrote.
	Discard bool `json:"discard,omitempty"`
}

// Share exports a host directory to the guest under Tag.
type Share struct {
	Tag      string `json:"tag"`
	HostPath string `json:"hostPath"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// NIC is one virtio network interface.
type NIC struct {
	// MAC is the interface's hardware address (locally administered).
	MAC string `json:"mac"`
	// Attachment says what the interface is plugged into on the host.
	Attachment Attachment `json:"attachment"`
	// MTU the device offers the guest; 0 keeps the hypervisor's (1500).
	MTU int `json:"mtu,omitempty"`
}

// AttachmentKind selects how a NIC reaches the host network.
type AttachmentKind string

const (
	// AttachTap plugs the NIC into a Linux tap device (QEMU backend).
	AttachTap AttachmentKind = "tap"
	// AttachSwitch plugs the NIC into the node's user-space switch
	// (network/vswitch): the shim creates a pair of datagram sockets (one
	// Ethernet frame per datagram), hands one end to the switch at Socket
	// and the other to the hypervisor as File. QEMU (dgram netdev) and vz
	// (VZFileHandleNetworkDeviceAttachment) take the same kind of socket.
	AttachSwitch AttachmentKind = "switch"
)

// Attachment is the host end of a NIC.
type Attachment struct {
	Kind AttachmentKind `json:"kind"`
	// Tap is the tap device name (AttachTap).
	Tap string `json:"tap,omitempty"`
	// Netns is the path of the network namespace holding Tap, e.g.
	// /run/netns/vkav (AttachTap); empty means the shim's own namespace.
	Netns string `json:"netns,omitempty"`
	// Socket is the switch's ports socket (AttachSwitch).
	Socket string `json:"socket,omitempty"`
	// File is the hypervisor's end of the cable (AttachSwitch), set by the
	// shim just before Driver.Start, which takes ownership of it. It is
	// never persisted.
	File *os.File `json:"-"`
}

// ErrInvalidSpec wraps every validation failure of a Spec.
var ErrInvalidSpec = errors.New("invalid VM spec")

var (
	idPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	serialPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,20}$`)
	macPattern    = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,36}$`)
)

// Validate checks the parts of a spec that do not depend on a backend;
// backends add their own limits (vz's CPU and memory bounds, for example).
func (s *Spec) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !idPattern.MatchString(s.ID) {
		bad("id %q must be 1-32 characters of [a-z0-9-]", s.ID)
	}
	switch s.Arch {
	case "amd64", "arm64":
	default:
		bad("arch %q must be amd64 or arm64", s.Arch)
	}
	if s.Kernel == "" {
		bad("kernel path is empty")
	}
	if s.Initrd == "" {
		bad("initrd path is empty")
	}
	if s.CPUs < 1 {
		bad("cpus must be at least 1, got %d", s.CPUs)
	}
	if s.MemoryMiB < 64 {
		bad("memory must be at least 64 MiB, got %d MiB", s.MemoryMiB)
	}
	if s.ConsoleLog == "" {
		bad("console log path is empty")
	}
	if s.ConsoleLogMaxSize != 0 && s.ConsoleLogMaxSize < consolelog.MinMaxSize {
		bad("console log cap %d bytes is below %d", s.ConsoleLogMaxSize, consolelog.MinMaxSize)
	}
	if strings.Contains(s.Cmdline, "console=") {
		bad("cmdline must not set console=; the backend chooses the console device")
	}
	serials := map[string]bool{}
	for i, d := range s.Disks {
		if !serialPattern.MatchString(d.Serial) {
			bad("disk %d: serial %q must be 1-20 characters of [A-Za-z0-9._-]", i, d.Serial)
		}
		if serials[d.Serial] {
			bad("disk %d: serial %q used twice", i, d.Serial)
		}
		serials[d.Serial] = true
		if d.Path == "" {
			bad("disk %d (%s): path is empty", i, d.Serial)
		}
	}
	tags := map[string]bool{}
	for i, sh := range s.Shares {
		if !tagPattern.MatchString(sh.Tag) {
			bad("share %d: tag %q must be 1-36 characters of [A-Za-z0-9._-]", i, sh.Tag)
		}
		if tags[sh.Tag] {
			bad("share %d: tag %q used twice", i, sh.Tag)
		}
		tags[sh.Tag] = true
		if sh.HostPath == "" {
			bad("share %d (%s): host path is empty", i, sh.Tag)
		}
	}
	for i, n := range s.NICs {
		if n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535) {
			bad("nic %d: mtu %d must be 576-65535", i, n.MTU)
		}
		if !macPattern.MatchString(n.MAC) {
			bad("nic %d: mac %q must be six lower-case hex octets separated by ':'", i, n.MAC)
		}
		switch n.Attachment.Kind {
		case AttachTap:
			if n.Attachment.Tap == "" {
				bad("nic %d: tap attachment without a device name", i)
			}
		case AttachSwitch:
			if n.Attachment.Socket == "" {
				bad("nic %d: switch attachment without the switch's socket", i)
			}
		default:
			bad("nic %d: unknown attachment kind %q", i, n.Attachment.Kind)
		}
	}
	ports := map[string]bool{}
	for _, p := range s.Ports {
		if !tagPattern.MatchString(p) {
			bad("port name %q must be 1-36 characters of [A-Za-z0-9._-]", p)
		}
		if ports[p] {
			bad("port %q used twice", p)
		}
		ports[p] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(errs, "; "))
	}
	return nil
}
