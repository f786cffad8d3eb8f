package vswitch

import (
	"errors"
	"net/netip"
	"testing"
)

func TestGatewayRoutes(t *testing.T) {
	g, _, err := newGateway(GatewayConfig{}, RouterConfig{Subnet: testSubnet, Gateway: testGW, GatewayMAC: gwHW, PodSideMAC: podSideHW}, testLog)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	vip := netip.MustParseAddr("10.96.0.10")
	if err := g.SetServices(ServiceTable{ClusterDomain: "cluster.local", Services: []Service{
		{Namespace: "n", Name: "s", ClusterIPs: []netip.Addr{vip}, Ports: []ServicePort{{Name: "p", Protocol: "TCP", Port: 80}},
			Endpoints: []ServiceEndpoint{{IP: ipB, Ports: []EndpointPort{{Name: "p", Protocol: "TCP", Port: 8080}}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	cases := []struct {
		dst    netip.AddrPort
		proto  uint8
		want   target
		refuse bool
	}{
		{ap("10.96.0.10:80"), ipProtoTCP, target{inside: true, addr: ap("10.213.0.20:8080")}, false},
		{ap("10.96.0.10:81"), ipProtoTCP, target{}, true}, // a port the Service lacks: no such VIP port, so not a Service flow
		{ap("10.96.0.10:80"), ipProtoUDP, target{}, true},
		{ap("10.201.0.9:443"), ipProtoTCP, target{addr: ap("10.201.0.9:443")}, false},
		{ap("127.0.0.1:5432"), ipProtoTCP, target{}, true},
		{ap("169.254.169.254:80"), ipProtoTCP, target{}, true},
		{ap("10.213.0.1:5432"), ipProtoTCP, target{}, true}, // the host's loopback, not allowed
		{ap("10.213.0.99:80"), ipProtoTCP, target{}, true},  // no pod there
		{ap("224.0.0.251:5353"), ipProtoUDP, target{}, true},
	}
	for _, c := range cases {
		got, err := g.route(c.proto, c.dst)
		if c.refuse {
			if !errors.Is(err, errRefused) {
				t.Errorf("route %v/%d = %+v, %v; want refused", c.dst, c.proto, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("route %v/%d = %+v, %v; want %+v", c.dst, c.proto, got, err, c.want)
		}
	}
	g.cfg.AllowHostLoopback = true
	if got, err := g.route(ipProtoTCP, ap("10.213.0.1:5432")); err != nil || got.addr != ap("127.0.0.1:5432") || got.inside {
		t.Errorf("with AllowHostLoopback: %+v %v", got, err)
	}
}
