package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

func baseSpec() vm.Spec {
	return vm.Spec{
		ID: "abc123", Arch: "amd64", Kernel: "/g/vmlinuz", Initrd: "/g/initrd.img",
		CPUs: 2, MemoryMiB: 512, ConsoleLog: "/s/console.log",
	}
}

// common is the prefix every amd64 TCG machine gets.
const common = "-name vkav-abc123,process=vkav-abc123 -machine q35 -accel tcg -cpu qemu64 -smp 2 -m 512M " +
	"-nodefaults -no-user-config -display none -no-reboot -kernel /g/vmlinuz -initrd /g/initrd.img"

// The console is a pipe in fd set 1: fd 3 without NICs, the fd after the
// NICs' with them.
const consoleAndQMP = " -add-fd fd=3,set=1 -chardev file,id=console,append=on,path=/dev/fdset/1 -serial chardev:console" +
	" -chardev socket,id=qmp,server=on,wait=off,path=/d/qmp.sock -mon chardev=qmp,mode=control"

const rngAndBalloon = " -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 -device virtio-balloon-pci,free-page-reporting=on"

// sharedRAM turns common into the prefix of a machine whose RAM is a shared
// memfd, which vhost-user devices need.
func sharedRAM(prefix string) string {
	prefix = strings.Replace(prefix, "-machine q35", "-machine q35,memory-backend=mem", 1)
	return strings.Replace(prefix, "-m 512M", "-m 512M -object memory-backend-memfd,id=mem,size=512M,share=on", 1)
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		edit func(*vm.Spec, *Config)
		want string // arguments joined by spaces; "-append" value quoted by the test
	}{{
		name: "minimal",
		edit: func(*vm.Spec, *Config) {},
		want: common + " -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "cmdline between console and panic",
		edit: func(s *vm.Spec, _ *Config) { s.Cmdline = "  quiet  vkavfloor=wait " },
		want: common + " -append [console=ttyS0 quiet vkavfloor=wait panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "restore reads the state from the fd after the console's",
		edit: func(s *vm.Spec, _ *Config) {
			s.RestoreFrom = "/t/machine.state"
			s.NICs = []vm.NIC{{MAC: "02:00:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/s/ports.sock"}}}
		},
		want: common + " -append [console=ttyS0 panic=-1]" + strings.Replace(consoleAndQMP, "fd=3,", "fd=4,", 1) +
			" -netdev dgram,id=net0,local.type=fd,local.str=3 -device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01" +
			rngAndBalloon + " -incoming fd:5",
	}, {
		name: "ports by index",
		edit: func(s *vm.Spec, _ *Config) { s.Ports = []string{vm.AgentPort, vm.LogPort} },
		want: common + " -append [console=ttyS0 panic=-1]" + consoleAndQMP +
			" -device virtio-serial-pci,id=vser0" +
			" -chardev socket,id=port0,server=on,wait=off,path=/d/port0.sock" +
			" -device virtserialport,bus=vser0.0,chardev=port0,name=vkav.agent" +
			" -chardev socket,id=port1,server=on,wait=off,path=/d/port1.sock" +
			" -device virtserialport,bus=vser0.0,chardev=port1,name=vkav.log" + rngAndBalloon,
	}, {
		name: "disks with serial, read-only, comma escaped",
		edit: func(s *vm.Spec, _ *Config) {
			s.Disks = []vm.Disk{
				{Serial: vm.DiskRootfs, Path: "/img/a,b.ext4", ReadOnly: true},
				{Serial: vm.DiskScratch, Path: "/s/scratch.ext4"},
			}
		},
		want: common + " -append [console=ttyS0 panic=-1]" + consoleAndQMP +
			" -drive id=disk0,if=none,format=raw,cache=writeback,werror=report,rerror=report,file=/img/a,,b.ext4,readonly=on" +
			" -device virtio-blk-pci,drive=disk0,serial=vkav-rootfs" +
			" -drive id=disk1,if=none,format=raw,cache=writeback,werror=report,rerror=report,file=/s/scratch.ext4" +
			" -device virtio-blk-pci,drive=disk1,serial=vkav-scratch" + rngAndBalloon,
	}, {
		name: "a volume disk passes discards to its sparse image",
		edit: func(s *vm.Spec, _ *Config) {
			s.Disks = []vm.Disk{{Serial: "vkav-vol0", Path: "/p/v.ext4", Discard: true}}
		},
		want: common + " -append [console=ttyS0 panic=-1]" + consoleAndQMP +
			" -drive id=disk0,if=none,format=raw,cache=writeback,werror=report,rerror=report,file=/p/v.ext4,discard=unmap" +
			" -device virtio-blk-pci,drive=disk0,serial=vkav-vol0" + rngAndBalloon,
	}, {
		name: "virtio-fs shares: shared memfd RAM, one vhost-user socket per share",
		edit: func(s *vm.Spec, _ *Config) {
			s.Shares = []vm.Share{{Tag: "vol1", HostPath: "/v/1", ReadOnly: true}, {Tag: "vol2", HostPath: "/v/a,b"}}
		},
		want: sharedRAM(common) + " -append [console=ttyS0 panic=-1]" + consoleAndQMP +
			" -chardev socket,id=fs0,path=/d/fs0.sock -device vhost-user-fs-pci,chardev=fs0,tag=vol1" +
			" -chardev socket,id=fs1,path=/d/fs1.sock -device vhost-user-fs-pci,chardev=fs1,tag=vol2" + rngAndBalloon,
	}, {
		name: "shared memory without shares",
		edit: func(_ *vm.Spec, c *Config) { c.SharedMemory = true },
		want: sharedRAM(common) + " -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "arm64 virt with shared memory",
		edit: func(s *vm.Spec, c *Config) { s.Arch = "arm64"; c.SharedMemory = true },
		want: strings.Replace(sharedRAM(common), "-machine q35,memory-backend=mem -accel tcg -cpu qemu64",
			"-machine virt,memory-backend=mem -accel tcg -cpu max", 1) + " -append [console=ttyAMA0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "nics: one descriptor per NIC in order, tap or switch cable",
		edit: func(s *vm.Spec, _ *Config) {
			s.NICs = []vm.NIC{
				{MAC: "02:00:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "tap0", Netns: "/run/netns/x"}},
				{MAC: "02:00:00:00:00:02", MTU: 65520, Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/run/ports.sock"}},
				{MAC: "02:00:00:00:00:03", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "tap1"}},
			}
		},
		want: common + " -append [console=ttyS0 panic=-1]" + strings.Replace(consoleAndQMP, "fd=3,", "fd=6,", 1) +
			" -netdev tap,id=net0,fd=3 -device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01" +
			" -netdev dgram,id=net1,local.type=fd,local.str=4" +
			" -device virtio-net-pci,netdev=net1,mac=02:00:00:00:00:02,host_mtu=65520" +
			" -netdev tap,id=net2,fd=5 -device virtio-net-pci,netdev=net2,mac=02:00:00:00:00:03" + rngAndBalloon,
	}, {
		name: "kvm uses the host cpu",
		edit: func(_ *vm.Spec, c *Config) { c.Accel = AccelKVM },
		want: strings.Replace(common, "-accel tcg -cpu qemu64", "-accel kvm -cpu host", 1) +
			" -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "tcg code buffer cap",
		edit: func(_ *vm.Spec, c *Config) { c.TCGCodeBufferMiB = 32 },
		want: strings.Replace(common, "-accel tcg ", "-accel tcg,tb-size=32 ", 1) +
			" -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "kvm has no tcg code buffer",
		edit: func(_ *vm.Spec, c *Config) { c.Accel, c.TCGCodeBufferMiB = AccelKVM, 32 },
		want: strings.Replace(common, "-accel tcg -cpu qemu64", "-accel kvm -cpu host", 1) +
			" -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "machine override",
		edit: func(_ *vm.Spec, c *Config) { c.Machine = "pc" },
		want: strings.Replace(common, "-machine q35", "-machine pc", 1) + " -append [console=ttyS0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}, {
		name: "arm64: virt, PL011 console, max cpu",
		edit: func(s *vm.Spec, _ *Config) { s.Arch = "arm64" },
		want: strings.Replace(common, "-machine q35 -accel tcg -cpu qemu64", "-machine virt -accel tcg -cpu max", 1) +
			" -append [console=ttyAMA0 panic=-1]" + consoleAndQMP + rngAndBalloon,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, cfg := baseSpec(), Config{Accel: AccelTCG, Dir: "/d"}
			tt.edit(&spec, &cfg)
			args, err := Args(spec, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := joinArgs(args); got != tt.want {
				t.Fatalf("args:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// joinArgs joins with spaces, bracketing the -append value, which holds spaces.
func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if i > 0 && args[i-1] == "-append" {
			a = "[" + a + "]"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func TestArgsRefuses(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*vm.Spec, *Config)
		target error
	}{
		{"invalid spec", func(s *vm.Spec, _ *Config) { s.CPUs = 0 }, vm.ErrInvalidSpec},
		{"console in cmdline", func(s *vm.Spec, _ *Config) { s.Cmdline = "console=hvc0" }, vm.ErrInvalidSpec},
		{"rosetta", func(s *vm.Spec, _ *Config) { s.Rosetta = true }, vm.ErrNotSupported},
		{"no dir", func(_ *vm.Spec, c *Config) { c.Dir = "" }, nil},
		{"unknown accel", func(_ *vm.Spec, c *Config) { c.Accel = "hvf" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, cfg := baseSpec(), Config{Accel: AccelTCG, Dir: "/d"}
			tt.edit(&spec, &cfg)
			_, err := Args(spec, cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Fatalf("got %v, want %v", err, tt.target)
			}
		})
	}
}
