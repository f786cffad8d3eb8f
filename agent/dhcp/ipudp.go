package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// UDP ports of BOOTP (RFC 951 §3 / RFC 2131 §4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	protoUDP      = 17
	// ipTTL as the Linux default (net.ipv4.ip_default_ttl); servers are on
	// the link, so any value works.
	ipTTL = 64
	// ipTOSLowDelay is the type of service ISC dhclient sets on its raw
	// packets (IPTOS_LOWDELAY, RFC 1349).
	ipTOSLowDelay = 0x10
)

// checksum is the Internet checksum (RFC 1071) of b, continuing sum.
func checksum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoSum starts a UDP checksum with the IPv4 pseudo-header (RFC 768).
func pseudoSum(src, dst netip.Addr, udpLen int) uint32 {
	s, d := src.As4(), dst.As4()
	var sum uint32
	for _, w := range [][2]byte{{s[0], s[1]}, {s[2], s[3]}, {d[0], d[1]}, {d[2], d[3]}} {
		sum += uint32(w[0])<<8 | uint32(w[1])
	}
	return sum + protoUDP + uint32(udpLen)
}

// ipv4UDP wraps payload in UDP and IPv4 headers.
func ipv4UDP(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	total := ipv4HeaderLen + udpHeaderLen + len(payload)
	b := make([]byte, total)
	b[0] = 0x45 // version 4, 5-word header
	b[1] = ipTOSLowDelay
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	b[8], b[9] = ipTTL, protoUDP
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], checksum(0, b[:ipv4HeaderLen]))
	u := b[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(udpHeaderLen+len(payload)))
	copy(u[udpHeaderLen:], payload)
	sum := checksum(pseudoSum(src, dst, len(u)), u)
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(u[6:], sum)
	return b
}

// udpPayload returns the payload of an IPv4 UDP packet sent to dstPort,
// and its source address. verifyUDP is false when the kernel reports the
// UDP checksum as not yet computed (a packet from a local veth or virtio
// peer with checksum offload carries only the pseudo-header sum).
func udpPayload(pkt []byte, dstPort uint16, verifyUDP bool) ([]byte, netip.Addr, error) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, netip.Addr{}, fmt.Errorf("not an IPv4 packet: %w", ErrMalformed)
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < ipv4HeaderLen || total < ihl+udpHeaderLen || total > len(pkt) {
		return nil, netip.Addr{}, fmt.Errorf("IPv4 header length %d, total %d, %d bytes read: %w", ihl, total, len(pkt), ErrMalformed)
	}
	if checksum(0, pkt[:ihl]) != 0 {
		return nil, netip.Addr{}, fmt.Errorf("bad IPv4 header checksum: %w", ErrMalformed)
	}
	if pkt[9] != protoUDP {
		return nil, netip.Addr{}, fmt.Errorf("IP protocol %d, not UDP: %w", pkt[9], ErrMalformed)
	}
	if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
		return nil, netip.Addr{}, fmt.Errorf("IPv4 fragment: %w", ErrMalformed)
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	u := pkt[ihl:total]
	if p := binary.BigEndian.Uint16(u[2:]); p != dstPort {
		return nil, netip.Addr{}, fmt.Errorf("UDP port %d, not %d: %w", p, dstPort, ErrMalformed)
	}
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if ulen < udpHeaderLen || ulen > len(u) {
		return nil, netip.Addr{}, fmt.Errorf("UDP length %d in %d bytes: %w", ulen, len(u), ErrMalformed)
	}
	u = u[:ulen]
	if verifyUDP && binary.BigEndian.Uint16(u[6:]) != 0 && checksum(pseudoSum(src, dst, ulen), u) != 0 {
		return nil, netip.Addr{}, fmt.Errorf("bad UDP checksum: %w", ErrMalformed)
	}
	return u[udpHeaderLen:], src, nil
}
