package bridge

import (
	"net/netip"
	"testing"
)

func TestDefaultsAndValidation(t *testing.T) {
	cfg, err := Config{StateDir: "/var/lib/vk-applevm"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Subnet != DefaultSubnet || cfg.LinkNet != DefaultLinkNet || cfg.MTU != 1500 {
		t.Errorf("defaults: %v %v %d", cfg.Subnet, cfg.LinkNet, cfg.MTU)
	}
	if DefaultSubnet.Overlaps(netip.MustParsePrefix("192.168.64.0/24")) || DefaultSubnet.Overlaps(netip.MustParsePrefix("10.96.0.0/12")) {
		t.Error("default subnet overlaps vz NAT or kubeadm's service range")
	}
	for _, bad := range []Config{
		{},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.1/24")},
		{StateDir: "/x", LinkNet: netip.MustParsePrefix("169.254.1.0/29")},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.0/24"), LinkNet: netip.MustParsePrefix("10.0.0.4/30")},
		{StateDir: "/x", MTU: 40},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
	a, _ := namesFor("/var/lib/vk-applevm")
	b, _ := namesFor("/var/lib/vk-applevm/")
	c, _ := namesFor("/tmp/other")
	if a != b || a == c {
		t.Errorf("names must follow the cleaned state root: %+v %+v %+v", a, b, c)
	}
	if len(a.nodeVeth) > 15 {
		t.Errorf("veth name %q longer than IFNAMSIZ-1", a.nodeVeth)
	}
}
