package vswitch

import (
	"encoding/binary"
	"net/netip"
)

// Offsets and constants of the headers the router reads. It parses only what
// it decides on (addresses, ports, TCP flags), in place, without copying.
const (
	ethHeaderLen = 14
	etherTypeIP4 = 0x0800
	etherTypeARP = 0x0806

	arpLen       = 28
	arpRequest   = 1
	arpReply     = 2
	ipProtoICMP  = 1
	ipProtoTCP   = 6
	ipProtoUDP   = 17
	tcpFlagSYN   = 0x02
	tcpFlagACK   = 0x10
	icmpEchoRep  = 0
	icmpEchoReq  = 8
	minIPv4Len   = 20
	ipFlagMoreFr = 0x2000
	ipFragOffset = 0x1fff
)

type mac [6]byte

var broadcastMAC = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (m mac) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, v := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[v>>4], hex[v&0xf])
	}
	return string(b)
}

func ethDst(f []byte) (m mac)       { copy(m[:], f[0:6]); return m }
func ethSrc(f []byte) (m mac)       { copy(m[:], f[6:12]); return m }
func ethType(f []byte) uint16       { return binary.BigEndian.Uint16(f[12:14]) }
func setEth(f []byte, dst, src mac) { copy(f[0:6], dst[:]); copy(f[6:12], src[:]) }

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

// arpPacket is the IPv4-over-Ethernet ARP payload of a frame.
type arpPacket []byte

// parseARP returns the ARP payload of f if it is IPv4 over Ethernet.
func parseARP(f []byte) (arpPacket, bool) {
	if len(f) < ethHeaderLen+arpLen {
		return nil, false
	}
	a := arpPacket(f[ethHeaderLen : ethHeaderLen+arpLen])
	// htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherTypeIP4 || a[4] != 6 || a[5] != 4 {
		return nil, false
	}
	return a, true
}

func (a arpPacket) op() uint16           { return binary.BigEndian.Uint16(a[6:8]) }
func (a arpPacket) senderMAC() (m mac)   { copy(m[:], a[8:14]); return m }
func (a arpPacket) senderIP() netip.Addr { return addr4(a[14:18]) }
func (a arpPacket) targetIP() netip.Addr { return addr4(a[24:28]) }
func (a arpPacket) targetMAC() (m mac)   { copy(m[:], a[18:24]); return m }
func (a arpPacket) setTargetMAC(m mac)   { copy(a[18:24], m[:]) }
func (a arpPacket) setSenderMAC(m mac)   { copy(a[8:14], m[:]) }
func (a arpPacket) setOp(op uint16)      { binary.BigEndian.PutUint16(a[6:8], op) }
func (a arpPacket) setIPs(sender, target netip.Addr) {
	s, t := sender.As4(), target.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
}

// arpReplyFrame builds the answer "ip is at hw" to a request from
// (askerMAC, askerIP).
func arpReplyFrame(hw mac, ip netip.Addr, askerMAC mac, askerIP netip.Addr) []byte {
	f := make([]byte, ethHeaderLen+arpLen)
	setEth(f, askerMAC, hw)
	binary.BigEndian.PutUint16(f[12:14], etherTypeARP)
	a := arpPacket(f[ethHeaderLen:])
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIP4)
	a[4], a[5] = 6, 4
	a.setOp(arpReply)
	a.setSenderMAC(hw)
	a.setTargetMAC(askerMAC)
	a.setIPs(ip, askerIP)
	return f
}

// ipv4Packet is what the router reads of an IPv4 packet.
type ipv4Packet struct {
	src, dst netip.Addr
	proto    uint8
	// l4 is the transport header and payload of an unfragmented packet or
	// of a first fragment; nil for later fragments (they carry no ports).
	l4 []byte
}

// parseIPv4 reads the IPv4 packet of frame f.
func parseIPv4(f []byte) (ipv4Packet, bool) {
	b := f[ethHeaderLen:]
	if len(b) < minIPv4Len || b[0]>>4 != 4 {
		return ipv4Packet{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < minIPv4Len || total < ihl || total > len(b) {
		return ipv4Packet{}, false
	}
	p := ipv4Packet{src: addr4(b[12:16]), dst: addr4(b[16:20]), proto: b[9]}
	if binary.BigEndian.Uint16(b[6:8])&ipFragOffset == 0 {
		p.l4 = b[ihl:total]
	}
	return p, true
}

// flowPorts returns the ports of a TCP or UDP packet (for ICMP echo, the
// identifier as both), and whether it opens a flow: a TCP SYN without ACK,
// any UDP datagram, an echo request.
func (p ipv4Packet) flowPorts() (src, dst uint16, opening, ok bool) {
	switch p.proto {
	case ipProtoTCP:
		if len(p.l4) < 14 {
			return 0, 0, false, false
		}
		flags := p.l4[13]
		return binary.BigEndian.Uint16(p.l4[0:2]), binary.BigEndian.Uint16(p.l4[2:4]), flags&tcpFlagSYN != 0 && flags&tcpFlagACK == 0, true
	case ipProtoUDP:
		if len(p.l4) < 8 {
			return 0, 0, false, false
		}
		return binary.BigEndian.Uint16(p.l4[0:2]), binary.BigEndian.Uint16(p.l4[2:4]), true, true
	case ipProtoICMP:
		if len(p.l4) < 8 || (p.l4[0] != icmpEchoReq && p.l4[0] != icmpEchoRep) {
			return 0, 0, false, false
		}
		id := binary.BigEndian.Uint16(p.l4[4:6])
		return id, id, p.l4[0] == icmpEchoReq, true
	}
	return 0, 0, false, false
}
