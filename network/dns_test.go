package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestHostNameservers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	stub := write("stub", "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example\n")
	upstream := write("upstream", "nameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver ::1\n"+
		"nameserver 2001:db8::53\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver bogus\n")

	got, err := HostNameservers(stub, filepath.Join(dir, "missing"), upstream)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("192.0.2.53")}
	if !slices.Equal(got, want) {
		t.Errorf("HostNameservers = %v, want %v (loopback, zoned and bad lines dropped, at most 3, stub file skipped)", got, want)
	}

	got, err = HostNameservers(stub)
	if err != nil || len(got) != 0 {
		t.Errorf("HostNameservers(only a loopback stub) = %v, %v; want none, nil", got, err)
	}
}
