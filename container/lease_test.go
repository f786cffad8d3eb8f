package container

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/network"
)

func TestRecordLeaseStoresTheDHCPAddress(t *testing.T) {
	dir := t.TempDir()
	ep := &network.Endpoint{ID: "0123456789ab", Guest: network.GuestConfig{MAC: "02:00:00:00:00:01", MTU: 1500, DHCP: true}}
	s := &VM{dir: dir, rec: record{Config: VMConfig{Name: "web"}, Endpoint: ep}}
	if err := writeRecord(dir, s.rec); err != nil {
		t.Fatal(err)
	}
	if s.IP() != "" {
		t.Fatalf("IP before the lease: %q", s.IP())
	}
	if err := s.recordLease([]string{"192.168.64.7/24"}); err != nil {
		t.Fatal(err)
	}
	if s.IP() != "192.168.64.7" || s.Addr() != netip.MustParseAddr("192.168.64.7") {
		t.Fatalf("IP %q", s.IP())
	}
	// What `ps` and a restarted node read back.
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Endpoint == nil || rec.Endpoint.IP != netip.MustParseAddr("192.168.64.7") || !rec.Endpoint.Guest.DHCP || rec.Config.Name != "web" {
		t.Fatalf("record %+v", rec)
	}
	b, _ := os.ReadFile(filepath.Join(dir, recordFile))
	var raw struct {
		Endpoint map[string]json.RawMessage `json:"endpoint"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || string(raw.Endpoint["ip"]) != `"192.168.64.7"` {
		t.Fatalf("sandbox.json endpoint: %s (%v)", b, err)
	}
}

func TestRecordLeaseLeavesStaticEndpoints(t *testing.T) {
	dir := t.TempDir()
	static := &network.Endpoint{IP: netip.MustParseAddr("10.213.0.5"), Guest: network.GuestConfig{Address: netip.MustParsePrefix("10.213.0.5/22")}}
	s := &VM{dir: dir, rec: record{Endpoint: static}}
	if err := s.recordLease([]string{"10.213.0.5/22"}); err != nil || s.IP() != "10.213.0.5" {
		t.Fatalf("static: %v %q", err, s.IP())
	}
	if _, err := os.Stat(filepath.Join(dir, recordFile)); !os.IsNotExist(err) {
		t.Fatalf("record rewritten for a static endpoint: %v", err)
	}
	if err := (&VM{dir: dir}).recordLease(nil); err != nil {
		t.Fatalf("no network: %v", err)
	}
}

func TestLeasedIP(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
		err   string
	}{
		{[]string{"fd00::5/64", "192.168.64.9/24"}, "192.168.64.9", ""},
		{nil, "", "no IPv4 address"},
		{[]string{"fd00::5/64"}, "", "no IPv4 address"},
		{[]string{"192.168.64.9"}, "", `"192.168.64.9"`},
	} {
		got, err := leasedIP(tc.addrs)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.addrs, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%v: %v %v, want %s", tc.addrs, got, err, tc.want)
		}
	}
}
