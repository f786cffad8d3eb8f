// Package qemu is the vm.Driver for Linux hosts: one qemu-system process per
// machine, KVM when a probe boot proves it works, TCG otherwise.
//
// The translation from vm.Spec to QEMU's command line is the pure function
// Args (this file, every platform), and to the command line of the
// virtiofsd serving each shared directory VirtiofsdArgs (virtiofsd.go);
// starting and supervising the processes lives in *_linux.go files.
package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Accel is a QEMU accelerator.
type Accel string

const (
	AccelKVM Accel = "kvm"
	AccelTCG Accel = "tcg"
)

// DefaultMachineX86 is the machine type on amd64. Measured under TCG on the
// 2-core CI host with BenchmarkBootToReady (floor init, variants booted in
// turn, two runs of 7 rounds, host loaded by parallel builds): QEMU CPU
// time to "ready", median, q35 1.61/1.79 s, pc 1.79/1.89 s, microvm
// 1.51/1.52 s; wall medians 3.5-4.4 s, dominated by the load. pc pays for
// legacy devices it cannot drop (the PIIX IDE controller the kernel
// probes). microvm is cheapest but hangs at TSC calibration under TCG (no
// PIT/HPET/PM-timer reference) unless the kernel is given the host's TSC
// rate (tsc_early_khz=), which is host-specific. q35 has all we need: PCIe
// virtio devices, the ACPI power button (system_powerdown), a 16550 UART.
const DefaultMachineX86 = "q35"

// DefaultMachineARM is the machine type on arm64 hosts.
const DefaultMachineARM = "virt"

// DiskCache is the host cache mode of every virtio-blk disk. writeback uses
// the host page cache: read-only rootfs images shared by many VMs are
// cached once on the host, guest flushes are still honoured for scratch
// disks, and it works on tmpfs, where cache=none (O_DIRECT) fails.
const DiskCache = "writeback"

// BalloonDevice is the memory balloon every machine gets: the balloon
// itself stays empty; free-page-reporting is what returns memory.
const BalloonDevice = "virtio-balloon-pci,free-page-reporting=on"

// DefaultTCGCodeBufferMiB is the size of TCG's translated code buffer
// (-accel tcg,tb-size=). QEMU 7.2's default is host RAM / 8 up to 1 GiB,
// and the buffer is never given back: it holds every translation the
// guest ever needed until it fills up, then is flushed whole. Measured
// with hack/bench's memory benchmark (QEMU's RSS by mapping, 2026-12-07):
// an idle busybox container VM held 72.5 MiB of it, the floor VM (the
// same kernel, a trivial init) 45.5 MiB; most of it is code run once at
// boot. A cap makes QEMU flush and translate again what still runs: at 32
// MiB the agent's boot took 4 % longer (5 rounds, -compare-tcg-buffer),
// at 48 the floor's translations still fit and the agent's boot flushes
// once. TCG only: KVM and vz run guest code natively.
const DefaultTCGCodeBufferMiB = 48

// Config is what Args needs besides the spec.
type Config struct {
	Accel   Accel
	Machine string // "" picks DefaultMachineX86 / DefaultMachineARM
	// Dir is the backend's private directory: QMP, port and share sockets.
	Dir string
	// TCGCodeBufferMiB, when > 0 and the accelerator is TCG, is the size of
	// TCG's translated code buffer (DefaultTCGCodeBufferMiB says why).
	TCGCodeBufferMiB int
	// SharedMemory backs guest RAM with a shared memfd even without
	// shares (a spec with shares always gets it: vhost-user needs it).
	SharedMemory bool
}

// guestMemoryID names the memory backend object of shared guest RAM.
const guestMemoryID = "mem"

// Socket paths inside Config.Dir. Ports are named by index, not by name,
// so paths stay short (sun_path is 108 bytes).
func qmpSocket(dir string) string          { return filepath.Join(dir, "qmp.sock") }
func portSocket(dir string, i int) string  { return filepath.Join(dir, "port"+strconv.Itoa(i)+".sock") }
func fsSocket(dir string, i int) string    { return filepath.Join(dir, "fs"+strconv.Itoa(i)+".sock") }
func binaryFor(arch string) (string, bool) { b, ok := binaries[arch]; return b, ok }

var binaries = map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}

// firstNICFD is the fd number of the first NIC's descriptor in the child:
// ExtraFiles start after stdin, stdout and stderr (os/exec), one per NIC in
// spec order (a tap queue, or the switch cable's end).
const firstNICFD = 3

// ConsoleFD is the fd number of the console pipe's write end in the child:
// the ExtraFile after the NICs'. The driver reads the other end into the
// capped console log (vm/consolelog); QEMU's own file chardev would grow
// without bound.
func ConsoleFD(spec vm.Spec) int { return firstNICFD + len(spec.NICs) }

// RestoreFD is the fd number of Spec.RestoreFrom, opened for reading, in
// the child: the ExtraFile after the console's. QEMU reads the saved
// machine from it (-incoming fd:N) before the guest runs.
func RestoreFD(spec vm.Spec) int { return ConsoleFD(spec) + 1 }

// consoleFDSet is the -add-fd set the console pipe is given to QEMU in;
// the chardev opens /dev/fdset/<set>, which dups it (QEMU >= 1.2).
const consoleFDSet = "1"

// Args translates spec into qemu-system arguments (without the binary).
// NICs expect their descriptors as ExtraFiles in NIC order: NIC k is fd
// 3+k; the console's pipe follows them (ConsoleFD), then the saved state
// of a restore (RestoreFD).
func Args(spec vm.Spec, cfg Config) ([]string, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Rosetta {
		return nil, fmt.Errorf("%w: rosetta is a vz feature", vm.ErrNotSupported)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("qemu args: empty private directory")
	}
	machine, console := cfg.Machine, "ttyS0"
	switch spec.Arch {
	case "amd64":
		if machine == "" {
			machine = DefaultMachineX86
		}
	case "arm64":
		if machine == "" {
			machine = DefaultMachineARM
		}
		console = "ttyAMA0" // the virt machine's PL011 UART
	}
	cpu := "max" // TCG: every feature QEMU can emulate
	switch cfg.Accel {
	case AccelKVM:
		cpu = "host"
	case AccelTCG:
		if spec.Arch == "amd64" {
			cpu = "qemu64" // QEMU's x86 default; Go needs only x86-64-v1
		}
	default:
		return nil, fmt.Errorf("qemu args: unknown accelerator %q", cfg.Accel)
	}

	cmdline := strings.Join(strings.Fields("console="+console+" "+spec.Cmdline+" panic=-1"), " ")
	memory := strconv.FormatUint(spec.MemoryMiB, 10) + "M"
	sharedMemory := cfg.SharedMemory || len(spec.Shares) > 0
	if sharedMemory {
		// vhost-user backends (virtiofsd) map guest RAM themselves, so it
		// must be a shareable file: a memfd the machine type uses as its
		// RAM (-machine memory-backend=, QEMU >= 5.0; sizes must match -m).
		machine += ",memory-backend=" + guestMemoryID
	}
	accel := string(cfg.Accel)
	if cfg.Accel == AccelTCG && cfg.TCGCodeBufferMiB > 0 {
		accel += ",tb-size=" + strconv.Itoa(cfg.TCGCodeBufferMiB)
	}
	a := []string{
		"-name", "vkav-" + spec.ID + ",process=vkav-" + spec.ID,
		"-machine", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-smp", strconv.Itoa(spec.CPUs),
		"-m", memory,
	}
	if sharedMemory {
		a = append(a, "-object", "memory-backend-memfd,id="+guestMemoryID+",size="+memory+",share=on")
	}
	a = append(a,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", spec.Kernel,
		"-initrd", spec.Initrd,
		"-append", cmdline,
		// The console is a pipe the driver drains into spec.ConsoleLog.
		// append=on is needed: without it QEMU opens the fd set with
		// O_TRUNC, which a pipe refuses ("Invalid argument", QEMU 7.2).
		"-add-fd", "fd="+strconv.Itoa(ConsoleFD(spec))+",set="+consoleFDSet,
		"-chardev", "file,id=console,append=on,path=/dev/fdset/"+consoleFDSet,
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,server=on,wait=off,path="+escape(qmpSocket(cfg.Dir)),
		"-mon", "chardev=qmp,mode=control",
	)
	if len(spec.Ports) > 0 {
		a = append(a, "-device", "virtio-serial-pci,id=vser0")
		for i, name := range spec.Ports {
			id := "port" + strconv.Itoa(i)
			a = append(a,
				"-chardev", "socket,id="+id+",server=on,wait=off,path="+escape(portSocket(cfg.Dir, i)),
				"-device", "virtserialport,bus=vser0.0,chardev="+id+",name="+name)
		}
	}
	for i, d := range spec.Disks {
		id := "disk" + strconv.Itoa(i)
		// werror/rerror=report: an I/O error (a full host disk above all)
		// reaches the guest as EIO, which fails the container's write,
		// instead of QEMU's default for writes (enospc: pause the VM),
		// which would leave a pod Running whose VM is silently stopped.
		drive := "id=" + id + ",if=none,format=raw,cache=" + DiskCache + ",werror=report,rerror=report,file=" + escape(d.Path)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		if d.Discard {
			drive += ",discard=unmap"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-pci,drive="+id+",serial="+d.Serial)
	}
	for i, sh := range spec.Shares {
		// virtio-fs, as under vz, so the guest mounts shares the same way
		// on both backends. One virtiofsd per share serves the socket (see
		// VirtiofsdArgs), which also enforces read-only shares.
		id := "fs" + strconv.Itoa(i)
		a = append(a,
			"-chardev", "socket,id="+id+",path="+escape(fsSocket(cfg.Dir, i)),
			"-device", "vhost-user-fs-pci,chardev="+id+",tag="+sh.Tag)
	}
	for i, n := range spec.NICs {
		id := "net" + strconv.Itoa(i)
		fd := strconv.Itoa(firstNICFD + i)
		var netdev string
		switch n.Attachment.Kind {
		case vm.AttachTap:
			// QEMU reads IFF_VNET_HDR from the fd itself (TUNGETIFF);
			// it refuses vnet_hdr= together with fd=.
			netdev = "tap,id=" + id + ",fd=" + fd
		case vm.AttachSwitch:
			// The shim's socket pair: one frame per datagram, as vz's
			// file-handle attachment (QEMU >= 7.2).
			netdev = "dgram,id=" + id + ",local.type=fd,local.str=" + fd
		}
		dev := "virtio-net-pci,netdev=" + id + ",mac=" + n.MAC
		if n.MTU != 0 {
			dev += ",host_mtu=" + strconv.Itoa(n.MTU)
		}
		a = append(a, "-netdev", netdev, "-device", dev)
	}
	a = append(a,
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
		// Free page reporting (QEMU >= 5.1, guest virtio_balloon with
		// CONFIG_PAGE_REPORTING): the guest reports free 2 MiB blocks and
		// QEMU discards them, so memory a container freed leaves QEMU's
		// RSS within seconds; no host-side policy is needed, and the
		// guest keeps its full size (docs/decisions.md, "Guest memory
		// goes back to the host").
		"-device", BalloonDevice)
	if spec.RestoreFrom != "" {
		// QEMU loads the saved machine, then waits paused (it was saved
		// paused); the machine lets it run (machine.resume).
		a = append(a, "-incoming", "fd:"+strconv.Itoa(RestoreFD(spec)))
	}
	return a, nil
}

// escape doubles commas, QEMU's escape inside an option value.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
