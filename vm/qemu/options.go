package qemu

import (
	"errors"
	"log/slog"
	"time"
)

// Options configure a Driver. The zero value works: qemu-system-<arch> from
// PATH, the default machine type, TCG unless VKAV_ACCEL=kvm (no probe image).
type Options struct {
	// Binary overrides qemu-system-x86_64 / qemu-system-aarch64.
	Binary string
	// Machine overrides DefaultMachineX86 / DefaultMachineARM.
	Machine string
	// Probe is the kernel and floor initrd (guest.Bundle.FloorInitrd)
	// booted to find out whether KVM works; without it KVM is not used
	// unless VKAV_ACCEL=kvm.
	Probe ProbeImage
	// ProbeTimeout bounds the KVM probe boot; default 6 s (a working KVM
	// boots the floor in well under a second; nested KVM here hangs).
	ProbeTimeout time.Duration
	// CacheDir holds the probe verdicts; default
	// ${XDG_CACHE_HOME:-~/.cache}/vk-applevm/qemu.
	CacheDir string
	// NoVnetHdr opens taps without IFF_VNET_HDR, which turns off checksum
	// and segmentation offload between guest and host. Measured guest→host
	// TCP (BenchmarkTapThroughput, TCG, 3 rounds): 490 MB/s with it, 71 MB/s
	// without (0.15×), so it is on by default.
	NoVnetHdr bool
	// Virtiofsd is the virtiofsd binary for shared directories; empty
	// tries VirtiofsdCandidates.
	Virtiofsd string
	// TCGCodeBufferMiB sizes TCG's translated code buffer (-accel
	// tcg,tb-size=); 0 picks TCGCodeBufferEnv if set, else
	// DefaultTCGCodeBufferMiB; a negative value leaves QEMU's own size. KVM
	// has no such buffer.
	TCGCodeBufferMiB int
	Logger           *slog.Logger
}

// ProbeImage is what the KVM probe boots.
type ProbeImage struct{ Kernel, Initrd string }

// AccelEnv overrides the accelerator choice: "kvm" or "tcg".
const AccelEnv = "VKAV_ACCEL"

// TCGCodeBufferEnv overrides DefaultTCGCodeBufferMiB for drivers whose
// Options leave it 0 (the shims'): a size in MiB, or -1 for QEMU's own.
// The benchmarks compare both in one run with it.
const TCGCodeBufferEnv = "VKAV_TCG_CODE_BUFFER_MIB"

// Verdict is the accelerator the driver uses and why.
type Verdict struct {
	Accel  Accel  `json:"accel"`
	Reason string `json:"reason"`
}

var (
	// ErrKilled is Err after Kill.
	ErrKilled = errors.New("machine killed")
	// ErrGuestReset is Err when the guest rebooted or panicked: with
	// -no-reboot and panic=-1 both end QEMU like a power-off would.
	ErrGuestReset = errors.New("guest reset or panicked (see the console log)")
)
