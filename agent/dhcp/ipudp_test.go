package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestChecksumKnownValues(t *testing.T) {
	// RFC 1071 §3's example: the sum of these words is ddf2.
	if got := checksum(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Fatalf("RFC 1071 example: %04x", got)
	}
	// A widely quoted IPv4 header whose checksum field is b861.
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := checksum(0, h); got != 0xb861 {
		t.Fatalf("IPv4 header checksum %04x, want b861", got)
	}
}

func TestIPv4UDPRoundTrip(t *testing.T) {
	src, dst := netip.MustParseAddr("192.168.64.1"), netip.MustParseAddr("192.168.64.7")
	payload := []byte("dhcp payload of odd length")
	pkt := ipv4UDP(src, dst, ServerPort, ClientPort, payload)
	if len(pkt) != 28+len(payload) || pkt[0] != 0x45 || pkt[9] != 17 {
		t.Fatalf("header % x", pkt[:28])
	}
	if checksum(0, pkt[:20]) != 0 {
		t.Fatal("IPv4 header does not check")
	}
	got, from, err := udpPayload(pkt, ClientPort, true)
	if err != nil || !bytes.Equal(got, payload) || from != src {
		t.Fatalf("payload %q from %v: %v", got, from, err)
	}
	// Trailing link-layer padding beyond the IP total length is ignored.
	if got, _, err := udpPayload(append(pkt, 0, 0, 0), ClientPort, true); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("padded: %q %v", got, err)
	}
}

func TestUDPPayloadRejects(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("255.255.255.255")
	good := func() []byte { return ipv4UDP(src, dst, ServerPort, ClientPort, []byte("hello")) }
	fixIP := func(b []byte) {
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], checksum(0, b[:20]))
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"IPv6", func(b []byte) []byte { b[0] = 0x60; return b }},
		{"header checksum", func(b []byte) []byte { b[8]--; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-2] }},
		{"short IHL", func(b []byte) []byte { b[0] = 0x44; fixIP(b); return b }},
		{"TCP", func(b []byte) []byte { b[9] = 6; fixIP(b); return b }},
		{"fragment", func(b []byte) []byte { b[6] = 0x20; fixIP(b); return b }},
		{"other port", func(b []byte) []byte { b[23] = 53; return b }},
		{"UDP length", func(b []byte) []byte { b[25] = 200; return b }},
		{"UDP checksum", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := udpPayload(tc.mod(good()), ClientPort, true); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want ErrMalformed", err)
			}
		})
	}
	// A checksum left to offload is accepted when the kernel says so, and
	// a zero checksum means none (RFC 768).
	b := good()
	b[len(b)-1] ^= 1
	if _, _, err := udpPayload(b, ClientPort, false); err != nil {
		t.Fatalf("unverified: %v", err)
	}
	b = good()
	b[26], b[27] = 0, 0
	if _, _, err := udpPayload(b, ClientPort, true); err != nil {
		t.Fatalf("no checksum: %v", err)
	}
	// The don't-fragment bit is not a fragment.
	b = good()
	b[6] = 0x40
	fixIP(b)
	if _, _, err := udpPayload(b, ClientPort, true); err != nil {
		t.Fatalf("DF set: %v", err)
	}
}
