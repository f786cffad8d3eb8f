package vm

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		ID: "0123456789ab", Arch: "amd64", Kernel: "/k", Initrd: "/i", CPUs: 1, MemoryMiB: 256,
		ConsoleLog: "/c.log",
		Disks:      []Disk{{Serial: DiskRootfs, Path: "/r.ext4", ReadOnly: true}, {Serial: DiskScratch, Path: "/s.ext4"}},
		NICs:       []NIC{{MAC: "02:00:00:00:00:01", Attachment: Attachment{Kind: AttachTap, Tap: "vkt0"}}},
		Ports:      []string{AgentPort, LogPort},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string // substring of the error; empty = valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"bad id", func(s *Spec) { s.ID = "Has Upper" }, "id"},
		{"long id", func(s *Spec) { s.ID = strings.Repeat("a", 33) }, "id"},
		{"arch", func(s *Spec) { s.Arch = "riscv64" }, "arch"},
		{"no kernel", func(s *Spec) { s.Kernel = "" }, "kernel"},
		{"no initrd", func(s *Spec) { s.Initrd = "" }, "initrd"},
		{"zero cpus", func(s *Spec) { s.CPUs = 0 }, "cpus"},
		{"tiny memory", func(s *Spec) { s.MemoryMiB = 16 }, "memory"},
		{"console in cmdline", func(s *Spec) { s.Cmdline = "quiet console=ttyS0" }, "console="},
		{"duplicate serial", func(s *Spec) { s.Disks[1].Serial = DiskRootfs }, "used twice"},
		{"long serial", func(s *Spec) { s.Disks[0].Serial = strings.Repeat("s", 21) }, "serial"},
		{"disk without path", func(s *Spec) { s.Disks[0].Path = "" }, "path is empty"},
		{"bad mac", func(s *Spec) { s.NICs[0].MAC = "02:00:00:00:00" }, "mac"},
		{"tap without name", func(s *Spec) { s.NICs[0].Attachment.Tap = "" }, "tap"},
		{"unknown attachment", func(s *Spec) { s.NICs[0].Attachment.Kind = "vmnet" }, "unknown attachment"},
		{"switch without socket", func(s *Spec) { s.NICs[0].Attachment = Attachment{Kind: AttachSwitch} }, "switch"},
		{"nat is gone", func(s *Spec) { s.NICs[0].Attachment = Attachment{Kind: "nat"} }, "unknown attachment"},
		{"duplicate port", func(s *Spec) { s.Ports = append(s.Ports, AgentPort) }, "used twice"},
		{"share tag", func(s *Spec) { s.Shares = []Share{{Tag: "a b", HostPath: "/x"}} }, "tag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mutate(&s)
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate() = %v, want ErrInvalidSpec mentioning %q", err, tc.want)
			}
		})
	}
}

func TestSpecJSONRoundTrip(t *testing.T) {
	in := validSpec()
	in.Shares = []Share{{Tag: "vol0", HostPath: "/v", ReadOnly: true}}
	in.Rosetta = true
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Spec
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the spec:\n in: %+v\nout: %+v", in, out)
	}
}
