package netns

import (
	"net"
	"strings"
	"testing"
)

func cfg(host, ip string, prefix int) Config {
	return Config{Name: "vk-applevm", HostIP: net.ParseIP(host), IP: net.ParseIP(ip), PrefixLen: prefix}
}

func TestValidate(t *testing.T) {
	if err := cfg("10.201.0.1", "10.201.0.2", 24).Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{cfg("10.201.0.1", "10.202.0.2", 24), "same /24"},
		{cfg("10.201.0.1", "10.201.0.1", 24), "both"},
		{cfg("127.0.0.1", "127.0.0.2", 8), "loopback"},
		{cfg("fd00::1", "fd00::2", 64), "IPv4"},
		{Config{Name: "a/b", HostIP: net.ParseIP("10.0.0.1"), IP: net.ParseIP("10.0.0.2"), PrefixLen: 24}, "netns name"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.c, err, tc.want)
		}
	}
}

func TestVethNames(t *testing.T) {
	a, b := cfg("10.201.0.1", "10.201.0.2", 24), Config{Name: "other"}
	if a.HostVeth() == a.PeerVeth() || a.HostVeth() == b.HostVeth() {
		t.Errorf("veth names collide: %s %s %s", a.HostVeth(), a.PeerVeth(), b.HostVeth())
	}
	for _, n := range []string{a.HostVeth(), a.PeerVeth()} {
		if len(n) > 15 { // IFNAMSIZ-1
			t.Errorf("%s longer than 15 bytes", n)
		}
	}
}
