package security

import (
	"slices"
	"strings"
	"testing"
)

func TestDefaultCapabilitiesMask(t *testing.T) {
	// containerd's default set as /proc/PID/status shows it for root.
	m, err := Mask(DefaultCapabilities)
	if err != nil || m != 0xa80425fb {
		t.Fatalf("mask = %#x, %v; want 0xa80425fb", m, err)
	}
}

func TestAdjust(t *testing.T) {
	for _, tc := range []struct {
		name      string
		add, drop []string
		want      []string // nil: the default set
		wantMask  uint64
		wantErr   string
	}{
		{name: "default", wantMask: 0xa80425fb},
		{name: "drop all", drop: []string{"ALL"}, want: []string{}},
		{name: "drop all add one", add: []string{"NET_BIND_SERVICE"}, drop: []string{"all"}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop one, prefix and case free", drop: []string{"cap_mknod", "NET_RAW"}, wantMask: 0xa80425fb &^ (1 << 27) &^ (1 << 13)},
		{name: "add all drop one", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, wantMask: (1<<41 - 1) &^ (1 << 21)},
		{name: "drop wins over add", add: []string{"SYS_PTRACE"}, drop: []string{"SYS_PTRACE"}, wantMask: 0xa80425fb},
		{name: "add all and drop all", add: []string{"ALL"}, drop: []string{"ALL"}, want: []string{}},
		{name: "unknown", add: []string{"SYS_WIZARD"}, wantErr: `unknown capability "SYS_WIZARD"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Adjust(tc.add, tc.drop)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil {
				if !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			m, _ := Mask(got)
			if m != tc.wantMask {
				t.Fatalf("mask %#x, want %#x (%v)", m, tc.wantMask, got)
			}
		})
	}
}

func TestCheckSysctl(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"kernel.shm_rmid_forced", "1", true},
		{"net/ipv4/tcp_syncookies", "1", true},
		{"net.ipv4.ip_local_port_range", "40000 50000", true},
		{"net.ipv4.ip_local_port_range", "40000", false},
		{"net.ipv4.ping_group_range", "0 2147483647", true},
		{"net.ipv4.ip_local_reserved_ports", "8080,9148-9150", true},
		{"net.ipv4.ip_local_reserved_ports", "80;rm", false},
		{"net.ipv4.tcp_rmem", "4096 87380 6291456", true},
		{"net.ipv4.tcp_keepalive_time", "abc", false},
		{"kernel.msgmax", "65536", false},     // namespaced but not in the safe set
		{"net.core.somaxconn", "1024", false}, // ditto
		{"vm.overcommit_memory", "1", false},
	} {
		err := CheckSysctl(tc.name, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("%s=%q: err %v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
	}
	if err := CheckSysctl("kernel.msgmax", "1"); err == nil || !strings.Contains(err.Error(), "not allowlisted") {
		t.Errorf("unsafe sysctl error %v does not say why", err)
	}
}

func TestPortRangeWithin(t *testing.T) {
	share := "32768\t46383\n" // the file's own format: a tab, a newline
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"32768 46383", true},
		{"40000 41000", true},
		{"1024 65000", false},
		{"32768 50000", false},
		{"41000 40000", false},
		{"x y", false},
	} {
		err := PortRangeWithin(tc.value, share)
		if (err == nil) != tc.ok {
			t.Errorf("%q within %q: %v, want ok=%v", tc.value, share, err, tc.ok)
		}
		if err != nil && tc.value == "1024 65000" && !strings.Contains(err.Error(), "32768-46383") {
			t.Errorf("error %q does not name the VM's share", err)
		}
	}
}
