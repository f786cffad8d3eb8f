package vz

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/vz/kernelformat"
)

// m1Limits are illustrative bounds for an 8-core, 16 GiB Mac; they are not
// read from a real machine (on darwin, hostLimits does that).
var m1Limits = HostLimits{
	MinCPUs:        1,
	MaxCPUs:        8,
	MinMemoryBytes: 128 << 20,
	MaxMemoryBytes: 16 << 30,
	Rosetta:        RosettaInstalled,
}

// writeImage writes a file with an arm64 Image header (booting.rst: magic
// "ARM\x64" at offset 56) and returns its path.
func writeImage(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 4096)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[56:], 0x644d5241)
	path := filepath.Join(dir, "Image")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func baseSpec(t *testing.T) vm.Spec {
	t.Helper()
	dir := t.TempDir()
	return vm.Spec{
		ID:         "0123456789ab",
		Arch:       "arm64",
		Kernel:     writeImage(t, dir),
		Initrd:     filepath.Join(dir, "initrd"),
		Cmdline:    "rdinit=/init quiet",
		CPUs:       2,
		MemoryMiB:  512,
		ConsoleLog: filepath.Join(dir, "console.log"),
		Ports:      []string{vm.AgentPort, vm.LogPort},
	}
}

func TestDescribeFullSpec(t *testing.T) {
	spec := baseSpec(t)
	spec.Disks = []vm.Disk{
		{Serial: vm.DiskRootfs, Path: "/images/rootfs/abc.ext4", ReadOnly: true},
		{Serial: vm.DiskScratch, Path: "/vms/x/scratch.ext4"},
	}
	cable := os.NewFile(^uintptr(0), "cable") // only compared, never used
	spec.NICs = []vm.NIC{
		{MAC: "52:54:00:12:34:56", MTU: 65520, Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/run/vkav/ports.sock", File: cable}},
	}
	spec.Shares = []vm.Share{{Tag: "volume-data", HostPath: "/pods/p/volumes/data", ReadOnly: true}}
	spec.Rosetta = true

	got, err := Describe(spec, m1Limits)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	want := &Config{
		Boot: LinuxBoot{
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: "rdinit=/init quiet console=hvc0 panic=-1",
		},
		CPUs:        2,
		MemoryBytes: 512 << 20,
		Disks: []BlockDevice{
			{Path: "/images/rootfs/abc.ext4", ReadOnly: true, Identifier: vm.DiskRootfs, Caching: CachingCached, Sync: SyncNone},
			{Path: "/vms/x/scratch.ext4", Identifier: vm.DiskScratch, Caching: CachingCached, Sync: SyncFsync},
		},
		ConsolePorts: []ConsolePort{{Name: vm.AgentPort}, {Name: vm.LogPort}},
		SerialLog:    spec.ConsoleLog,
		Entropy:      true,
		Balloon:      true,
		NICs: []NetworkDevice{
			{Kind: NetworkFileHandle, MAC: "52:54:00:12:34:56", File: cable, MTU: 65520},
		},
		Shares:  []DirectoryShare{{Tag: "volume-data", HostPath: "/pods/p/volumes/data", ReadOnly: true}},
		Rosetta: &RosettaShare{Tag: RosettaTag},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Describe mismatch (-want +got):\n%s", diff)
	}
}

func TestDescribeMinimalSpecHasNoOptionalDevices(t *testing.T) {
	spec := baseSpec(t)
	spec.Ports = nil
	got, err := Describe(spec, m1Limits)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if len(got.Disks)+len(got.NICs)+len(got.Shares)+len(got.ConsolePorts) != 0 || got.Rosetta != nil {
		t.Errorf("minimal spec produced devices: %+v", got)
	}
	if !got.Entropy || !got.Balloon || got.SerialLog != spec.ConsoleLog {
		t.Errorf("entropy, balloon and serial log are always present: %+v", got)
	}
}

func TestDescribeCmdline(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "console=hvc0 panic=-1"},
		{"  rdinit=/init   quiet ", "rdinit=/init quiet console=hvc0 panic=-1"},
		// A spec that chose its own panic behaviour keeps it.
		{"rdinit=/init panic=5", "rdinit=/init panic=5 console=hvc0"},
		{"panicky=1", "panicky=1 console=hvc0 panic=-1"},
	}
	for _, tc := range cases {
		spec := baseSpec(t)
		spec.Cmdline = tc.in
		got, err := Describe(spec, m1Limits)
		if err != nil {
			t.Fatalf("Describe(cmdline %q): %v", tc.in, err)
		}
		if got.Boot.Cmdline != tc.want {
			t.Errorf("cmdline %q: got %q, want %q", tc.in, got.Boot.Cmdline, tc.want)
		}
	}
}

func TestDescribeLimits(t *testing.T) {
	cases := []struct {
		name       string
		cpus       int
		memoryMiB  uint64
		host       HostLimits
		wantBytes  uint64
		wantErrSub string
	}{
		{name: "at minimum", cpus: 1, memoryMiB: 128, host: m1Limits, wantBytes: 128 << 20},
		{name: "at maximum", cpus: 8, memoryMiB: 16 << 10, host: m1Limits, wantBytes: 16 << 30},
		{name: "too many cpus", cpus: 9, memoryMiB: 512, host: m1Limits, wantErrSub: "9 CPUs: this Mac allows 1 to 8"},
		{name: "too little memory", cpus: 1, memoryMiB: 64, host: m1Limits, wantErrSub: "64 MiB of memory: this Mac allows 128 to 16384 MiB"},
		{name: "too much memory", cpus: 1, memoryMiB: 16<<10 + 1, host: m1Limits, wantErrSub: "16385 MiB of memory"},
		{name: "min cpus above one", cpus: 1, memoryMiB: 512, host: HostLimits{MinCPUs: 2, MaxCPUs: 4, MaxMemoryBytes: 1 << 30}, wantErrSub: "allows 2 to 4"},
		// A minimum that is not a MiB multiple is reported rounded up.
		{name: "odd minimum", cpus: 1, memoryMiB: 100, host: HostLimits{MinCPUs: 1, MaxCPUs: 1, MinMemoryBytes: 100<<20 + 1, MaxMemoryBytes: 1 << 30}, wantErrSub: "allows 101 to 1024 MiB"},
		{name: "overflow", cpus: 1, memoryMiB: 1 << 60, host: m1Limits, wantErrSub: "overflows"},
		{name: "unknown host", cpus: 1, memoryMiB: 512, host: HostLimits{}, wantErrSub: "host CPU limits unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec(t)
			spec.CPUs, spec.MemoryMiB = tc.cpus, tc.memoryMiB
			got, err := Describe(spec, tc.host)
			if tc.wantErrSub == "" {
				if err != nil {
					t.Fatalf("Describe: %v", err)
				}
				if got.MemoryBytes != tc.wantBytes || got.MemoryBytes%(1<<20) != 0 || got.CPUs != uint(tc.cpus) {
					t.Errorf("got %d CPUs, %d bytes; want %d CPUs, %d bytes", got.CPUs, got.MemoryBytes, tc.cpus, tc.wantBytes)
				}
				return
			}
			if err == nil {
				t.Fatalf("Describe accepted %d CPUs, %d MiB on %+v", tc.cpus, tc.memoryMiB, tc.host)
			}
			if !errors.Is(err, vm.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.wantErrSub) {
				t.Errorf("error %q: want ErrInvalidSpec mentioning %q", err, tc.wantErrSub)
			}
		})
	}
}

func TestDescribeErrors(t *testing.T) {
	gz := func(t *testing.T, spec *vm.Spec) {
		image, err := os.ReadFile(spec.Kernel)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(image)
		w.Close()
		spec.Kernel += ".gz"
		if err := os.WriteFile(spec.Kernel, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		mutate  func(t *testing.T, spec *vm.Spec)
		host    *HostLimits
		wantIs  error
		wantSub string
	}{
		{
			name:    "gzip kernel",
			mutate:  gz,
			wantIs:  kernelformat.ErrNotArm64Image,
			wantSub: "gzip-compressed",
		},
		{
			name:    "missing kernel",
			mutate:  func(t *testing.T, s *vm.Spec) { s.Kernel = filepath.Join(t.TempDir(), "nope") },
			wantIs:  os.ErrNotExist,
			wantSub: "open kernel",
		},
		{
			name:    "restore",
			mutate:  func(t *testing.T, s *vm.Spec) { s.RestoreFrom = "/t/machine.state" },
			wantIs:  vm.ErrNotSupported,
			wantSub: "restoring a saved machine",
		},
		{
			name:    "amd64 guest",
			mutate:  func(t *testing.T, s *vm.Spec) { s.Arch = "amd64" },
			wantIs:  vm.ErrInvalidSpec,
			wantSub: "arm64 guests only",
		},
		{
			name: "tap nic",
			mutate: func(t *testing.T, s *vm.Spec) {
				s.NICs = []vm.NIC{{MAC: "52:54:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "vkav0"}}}
			},
			wantIs:  vm.ErrNotSupported,
			wantSub: "macOS has no tap devices",
		},
		{
			name:    "rosetta not installed",
			mutate:  func(t *testing.T, s *vm.Spec) { s.Rosetta = true },
			host:    &HostLimits{MinCPUs: 1, MaxCPUs: 8, MaxMemoryBytes: 1 << 30, Rosetta: RosettaNotInstalled},
			wantIs:  ErrRosettaNotInstalled,
			wantSub: "softwareupdate --install-rosetta",
		},
		{
			name:    "rosetta not supported",
			mutate:  func(t *testing.T, s *vm.Spec) { s.Rosetta = true },
			host:    &HostLimits{MinCPUs: 1, MaxCPUs: 8, MaxMemoryBytes: 1 << 30, Rosetta: RosettaNotSupported},
			wantIs:  vm.ErrNotSupported,
			wantSub: "needs Apple silicon",
		},
		{
			name: "share tag taken by rosetta",
			mutate: func(t *testing.T, s *vm.Spec) {
				s.Rosetta = true
				s.Shares = []vm.Share{{Tag: RosettaTag, HostPath: "/x"}}
			},
			wantIs:  vm.ErrInvalidSpec,
			wantSub: "reserved for Rosetta",
		},
		{
			name:    "invalid spec",
			mutate:  func(t *testing.T, s *vm.Spec) { s.Cmdline = "console=ttyS0" },
			wantIs:  vm.ErrInvalidSpec,
			wantSub: "must not set console=",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec(t)
			tc.mutate(t, &spec)
			host := m1Limits
			if tc.host != nil {
				host = *tc.host
			}
			cfg, err := Describe(spec, host)
			if err == nil {
				t.Fatalf("Describe accepted the spec: %+v", cfg)
			}
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("error %q: want one wrapping %v and mentioning %q", err, tc.wantIs, tc.wantSub)
			}
		})
	}
}

// All problems of a spec are reported at once, so a user fixes them in one go.
func TestDescribeReportsEveryProblem(t *testing.T) {
	spec := baseSpec(t)
	spec.CPUs = 64
	spec.NICs = []vm.NIC{{MAC: "52:54:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "t0"}}}
	_, err := Describe(spec, m1Limits)
	if err == nil {
		t.Fatal("Describe accepted 64 CPUs and a tap NIC")
	}
	for _, want := range []error{vm.ErrInvalidSpec, vm.ErrNotSupported} {
		if !errors.Is(err, want) {
			t.Errorf("error %q does not wrap %v", err, want)
		}
	}
}

// RosettaAvailability.Err is what the CLI checks before booting an amd64
// image; it agrees with Describe.
func TestRosettaAvailabilityErr(t *testing.T) {
	if err := RosettaInstalled.Err(); err != nil {
		t.Errorf("installed: %v", err)
	}
	if err := RosettaNotInstalled.Err(); !errors.Is(err, ErrRosettaNotInstalled) {
		t.Errorf("not installed: %v, want ErrRosettaNotInstalled", err)
	}
	for _, a := range []RosettaAvailability{RosettaNotSupported, ""} {
		if err := a.Err(); !errors.Is(err, vm.ErrNotSupported) {
			t.Errorf("%q: %v, want vm.ErrNotSupported", a, err)
		}
	}
}
