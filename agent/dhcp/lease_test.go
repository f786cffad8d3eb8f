package dhcp

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func secs(s uint32) []byte { return []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)} }

func ack(opts Options) *Message {
	o := Options{OptMessageType: {byte(Ack)}, OptSubnetMask: {255, 255, 255, 0}, OptLeaseTime: secs(3600),
		OptServerID: {192, 168, 64, 1}, OptRouter: {192, 168, 64, 1, 192, 168, 64, 2},
		OptDNS: {192, 168, 64, 1, 1, 1, 1, 1}, OptDomainName: []byte("local")}
	for k, v := range opts {
		if v == nil {
			delete(o, k)
		} else {
			o[k] = v
		}
	}
	return &Message{Op: opReply, YourIP: netip.MustParseAddr("192.168.64.7"), Options: o}
}

func TestLeaseFromAck(t *testing.T) {
	start := time.Unix(1000, 0)
	l, err := leaseFromAck(ack(nil), netip.Addr{}, start)
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != netip.MustParsePrefix("192.168.64.7/24") || l.Router != netip.MustParseAddr("192.168.64.1") ||
		len(l.DNS) != 2 || l.DNS[1] != netip.MustParseAddr("1.1.1.1") || l.Domain != "local" ||
		l.ServerID != netip.MustParseAddr("192.168.64.1") || l.Duration != time.Hour {
		t.Fatalf("lease %+v", l)
	}
	// RFC 2131 §4.4.5 defaults.
	if l.T1 != 30*time.Minute || l.T2 != 52*time.Minute+30*time.Second || !l.Expiry().Equal(start.Add(time.Hour)) {
		t.Fatalf("T1 %v T2 %v expiry %v", l.T1, l.T2, l.Expiry())
	}
}

func TestLeaseTimes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		t1, t2 []byte
		want1  time.Duration
		want2  time.Duration
	}{
		{"server's", secs(600), secs(1200), 10 * time.Minute, 20 * time.Minute},
		{"T2 beyond lease ignored", secs(600), secs(4000), 10 * time.Minute, 3150 * time.Second},
		{"T1 after T2 ignored", secs(3000), secs(1200), 10 * time.Minute, 20 * time.Minute},
		{"T1 alone", secs(100), nil, 100 * time.Second, 3150 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := leaseFromAck(ack(Options{OptRenewalTime: tc.t1, OptRebindingTime: tc.t2}), netip.Addr{}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if l.T1 != tc.want1 || l.T2 != tc.want2 {
				t.Fatalf("T1 %v T2 %v, want %v %v", l.T1, l.T2, tc.want1, tc.want2)
			}
		})
	}
	l, err := leaseFromAck(ack(Options{OptLeaseTime: secs(0xffffffff)}), netip.Addr{}, time.Now())
	if err != nil || l.Duration != Infinite || l.T1 != Infinite || !l.Expiry().IsZero() {
		t.Fatalf("infinite lease %+v %v", l, err)
	}
}

func TestLeaseFallbacksAndErrors(t *testing.T) {
	fallback := netip.MustParseAddr("10.9.9.9")
	l, err := leaseFromAck(ack(Options{OptSubnetMask: nil, OptServerID: nil, OptRouter: nil}), fallback, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// 192.168/16 is class C: /24 without a mask.
	if l.Address.Bits() != 24 || l.ServerID != fallback || l.Router.IsValid() {
		t.Fatalf("lease %+v", l)
	}
	if l, _ := leaseFromAck(&Message{YourIP: netip.MustParseAddr("10.0.0.5"), Options: Options{OptLeaseTime: secs(60)}}, fallback, time.Now()); l.Address.Bits() != 8 {
		t.Fatalf("class A natural mask: %v", l.Address)
	}
	for name, m := range map[string]*Message{
		"no lease time":   ack(Options{OptLeaseTime: nil}),
		"zero lease time": ack(Options{OptLeaseTime: secs(0)}),
		"holey mask":      ack(Options{OptSubnetMask: {255, 0, 255, 0}}),
		"zero mask":       ack(Options{OptSubnetMask: {0, 0, 0, 0}}),
		"short mask":      ack(Options{OptSubnetMask: {255, 255}}),
		"no address":      {YourIP: netip.IPv4Unspecified(), Options: ack(nil).Options},
	} {
		if _, err := leaseFromAck(m, fallback, time.Now()); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
