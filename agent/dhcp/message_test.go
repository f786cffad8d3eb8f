package dhcp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// offerBytes is a DHCPOFFER written out field by field (the layout of RFC
// 2131 figure 1, independent of Marshal): 192.168.0.10 offered by
// 192.168.0.1 to 00:0b:82:01:fc:42, one hour, T1 30 min, T2 52.5 min.
func offerBytes() []byte {
	b := make([]byte, 236)
	b[0], b[1], b[2] = 2, 1, 6                  // op reply, ethernet, 6-byte address
	copy(b[4:], []byte{0x00, 0x00, 0x3d, 0x1d}) // xid
	copy(b[16:], []byte{192, 168, 0, 10})       // yiaddr
	copy(b[20:], []byte{192, 168, 0, 1})        // siaddr
	copy(b[28:], []byte{0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42})
	b = append(b, 99, 130, 83, 99)
	b = append(b, 53, 1, 2) // OFFER
	b = append(b, 1, 4, 255, 255, 255, 0)
	b = append(b, 58, 4, 0, 0, 0x07, 0x08) // 1800 s
	b = append(b, 59, 4, 0, 0, 0x0c, 0x4e) // 3150 s
	b = append(b, 51, 4, 0, 0, 0x0e, 0x10) // 3600 s
	b = append(b, 54, 4, 192, 168, 0, 1)
	b = append(b, 0, 0) // pad
	b = append(b, 255)
	return b
}

func TestParseHandWrittenOffer(t *testing.T) {
	m, err := Parse(offerBytes())
	if err != nil {
		t.Fatal(err)
	}
	if m.Op != opReply || m.XID != 0x3d1d || m.Type() != Offer || m.HWAddr.String() != "00:0b:82:01:fc:42" ||
		m.YourIP != netip.MustParseAddr("192.168.0.10") || m.ServerIP != netip.MustParseAddr("192.168.0.1") ||
		!m.ClientIP.IsUnspecified() {
		t.Fatalf("parsed %+v", m)
	}
	if id, ok := m.Options.Addr(OptServerID); !ok || id != netip.MustParseAddr("192.168.0.1") {
		t.Fatalf("server id %v %v", id, ok)
	}
	if d, ok := m.Options.Seconds(OptLeaseTime); !ok || d != time.Hour {
		t.Fatalf("lease time %v %v", d, ok)
	}
	if len(m.Options) != 6 {
		t.Fatalf("options %v", m.Options)
	}
}

func TestMarshalLayout(t *testing.T) {
	m := &Message{Op: opRequest, XID: 0x01020304, Secs: 7, Flags: FlagBroadcast,
		ClientIP: netip.MustParseAddr("10.0.0.9"), HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Options: Options{OptHostname: []byte("box"), OptMessageType: {byte(Request)}, OptClientID: {1, 2, 0, 0, 0, 0, 1}}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != minPayloadLen {
		t.Fatalf("length %d, want the BOOTP minimum %d", len(b), minPayloadLen)
	}
	want := []byte{1, 1, 6, 0, 1, 2, 3, 4, 0, 7, 0x80, 0, 10, 0, 0, 9}
	if !bytes.Equal(b[:16], want) {
		t.Fatalf("header % x, want % x", b[:16], want)
	}
	if !bytes.Equal(b[236:240], []byte{99, 130, 83, 99}) {
		t.Fatalf("cookie % x", b[236:240])
	}
	// Message type first, then ascending codes, End, padding.
	opts := []byte{53, 1, 3, 12, 3, 'b', 'o', 'x', 61, 7, 1, 2, 0, 0, 0, 0, 1, 255}
	if !bytes.Equal(b[240:240+len(opts)], opts) {
		t.Fatalf("options % x, want % x", b[240:240+len(opts)], opts)
	}
	for _, p := range b[240+len(opts):] {
		if p != 0 {
			t.Fatalf("padding % x", b[240+len(opts):])
		}
	}
}

func TestMarshalParseRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 600) // split into 255+255+90 (RFC 3396)
	m := &Message{Op: opReply, XID: 42, Secs: 3, ClientIP: netip.MustParseAddr("10.1.2.3"),
		YourIP: netip.MustParseAddr("10.1.2.4"), ServerIP: netip.MustParseAddr("10.1.2.5"),
		RelayIP: netip.MustParseAddr("10.1.2.6"), HWAddr: net.HardwareAddr{2, 1, 2, 3, 4, 5},
		Options: Options{OptMessageType: {byte(Ack)}, OptDomainName: long, OptRouter: {10, 1, 2, 1, 10, 1, 2, 2}}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if n := bytes.Count(b, []byte{byte(OptDomainName), 255}); n != 2 {
		t.Fatalf("domain split into %d full instances, want 2", n)
	}
}

func TestMarshalRejects(t *testing.T) {
	if _, err := (&Message{HWAddr: make(net.HardwareAddr, 17)}).Marshal(); err == nil {
		t.Fatal("17-byte hardware address accepted")
	}
	if _, err := (&Message{HWAddr: net.HardwareAddr{1}, ClientIP: netip.MustParseAddr("::1")}).Marshal(); err == nil {
		t.Fatal("IPv6 ciaddr accepted")
	}
}

func TestParseOverloadedOptions(t *testing.T) {
	b := offerBytes()
	b = b[:len(b)-1]        // drop End
	b = append(b, 52, 1, 3) // options in file and sname too
	b = append(b, 255)
	copy(b[offFile:], []byte{3, 4, 192, 168, 0, 1, 255})            // router
	copy(b[offSname:], []byte{15, 6, 'e', 'x', '.', 'c', 'o', 'm'}) // domain, no End
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.Options.Addrs(OptRouter); !ok || r[0] != netip.MustParseAddr("192.168.0.1") {
		t.Fatalf("router from file field: %v", m.Options)
	}
	if string(m.Options[OptDomainName]) != "ex.com" {
		t.Fatalf("domain from sname field: %q", m.Options[OptDomainName])
	}
	if _, ok := m.Options[OptOverload]; ok {
		t.Fatal("option 52 kept")
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:239] }},
		{"no cookie", func(b []byte) []byte { b[236] = 0; return b }},
		{"hardware address too long", func(b []byte) []byte { b[2] = 17; return b }},
		{"option without length", func(b []byte) []byte { return append(b[:len(b)-1], 12) }},
		{"option overruns", func(b []byte) []byte { return append(b[:len(b)-1], 12, 10, 'a') }},
		{"overloaded file overruns", func(b []byte) []byte {
			b = append(b[:len(b)-1], 52, 1, 1, 255)
			b[fixedLen-2], b[fixedLen-1] = 3, 9
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.mod(offerBytes()))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want ErrMalformed", err)
			}
		})
	}
	// A full options field without End is read up to the end.
	b := offerBytes()
	if m, err := Parse(b[:len(b)-1]); err != nil || m.Type() != Offer {
		t.Fatalf("without End: %v", err)
	}
}

func TestOptionAccessors(t *testing.T) {
	o := Options{
		OptMessageType: {1, 2},
		OptServerID:    {10, 0, 0},
		OptDNS:         {10, 0, 0, 1, 10, 0},
		OptLeaseTime:   {0xff, 0xff, 0xff, 0xff},
		OptRenewalTime: {0, 1},
	}
	if o.MessageType() != 0 {
		t.Error("two-byte message type accepted")
	}
	if _, ok := o.Addr(OptServerID); ok {
		t.Error("3-byte address accepted")
	}
	if _, ok := o.Addrs(OptDNS); ok {
		t.Error("6-byte address list accepted")
	}
	if d, ok := o.Seconds(OptLeaseTime); !ok || d != Infinite {
		t.Errorf("0xffffffff = %v, want Infinite", d)
	}
	if _, ok := o.Seconds(OptRenewalTime); ok {
		t.Error("2-byte time accepted")
	}
	if Ack.String() != "ACK" || MessageType(99).String() != "type 99" {
		t.Errorf("names %s %s", Ack, MessageType(99))
	}
}
