package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/network"
)

func TestParsePublish(t *testing.T) {
	got, err := parsePublish([]string{"8080:80", "127.0.0.1:5353:53/udp", "9000:9000/tcp"})
	if err != nil {
		t.Fatal(err)
	}
	any := netip.IPv4Unspecified()
	want := []network.PublishedPort{
		{HostIP: any, HostPort: 8080, Port: 80, Protocol: "TCP"},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, Port: 53, Protocol: "UDP"},
		{HostIP: any, HostPort: 9000, Port: 9000, Protocol: "TCP"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if s := publishedString(got[:2]); s != "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp" {
		t.Errorf("ps shows %q", s)
	}
	for _, bad := range []string{"80", "a:80", "8080:0", "8080:80/sctp", "::1:80:80", "1.2.3:80:80", "70000:80"} {
		if _, err := parsePublish([]string{bad}); err == nil {
			t.Errorf("-p %q accepted", bad)
		}
	}
	if _, err := parsePublish([]string{"8080:80", "8080:81"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a host port twice: %v", err)
	}
}
