package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrMalformed is wrapped by every error parsing a message or packet.
var ErrMalformed = errors.New("malformed DHCP packet")

// Layout of a BOOTP/DHCP message, RFC 2131 §2 figure 1.
const (
	opRequest     = 1
	opReply       = 2
	htypeEther    = 1   // RFC 1700 hardware type
	fixedLen      = 236 // op .. file
	cookieLen     = 4
	offChaddr     = 28
	offSname      = 44
	offFile       = 108
	chaddrLen     = 16
	minPayloadLen = 300 // RFC 1542 §2.1: relays and old servers drop shorter BOOTP messages
)

// magicCookie opens the options field (RFC 2131 §3, RFC 1497).
var magicCookie = [cookieLen]byte{99, 130, 83, 99}

// FlagBroadcast asks the server to broadcast its reply (RFC 2131 §2
// figure 2). This client receives unicast before it has an address, so it
// leaves the flag clear, as §4.1 recommends.
const FlagBroadcast = 0x8000

// Message is one BOOTP/DHCP message. Zero addresses encode as 0.0.0.0.
type Message struct {
	Op       byte // 1 request, 2 reply
	XID      uint32
	Secs     uint16
	Flags    uint16
	ClientIP netip.Addr // ciaddr
	YourIP   netip.Addr // yiaddr
	ServerIP netip.Addr // siaddr
	RelayIP  netip.Addr // giaddr
	HWAddr   net.HardwareAddr
	Options  Options
}

// Type is the DHCP message type (option 53).
func (m *Message) Type() MessageType { return m.Options.MessageType() }

func putAddr(b []byte, a netip.Addr) error {
	if !a.IsValid() {
		return nil // 0.0.0.0: b is zeroed
	}
	if !a.Is4() {
		return fmt.Errorf("address %s is not IPv4", a)
	}
	v := a.As4()
	copy(b, v[:])
	return nil
}

// Marshal encodes the message, padded to the BOOTP minimum of 300 bytes.
func (m *Message) Marshal() ([]byte, error) {
	if len(m.HWAddr) > chaddrLen {
		return nil, fmt.Errorf("hardware address %s longer than %d bytes", m.HWAddr, chaddrLen)
	}
	b := make([]byte, fixedLen, 576) // 576: the datagram every host must accept (RFC 2131 §2)
	b[0], b[1], b[2] = m.Op, htypeEther, byte(len(m.HWAddr))
	binary.BigEndian.PutUint32(b[4:], m.XID)
	binary.BigEndian.PutUint16(b[8:], m.Secs)
	binary.BigEndian.PutUint16(b[10:], m.Flags)
	for i, a := range []netip.Addr{m.ClientIP, m.YourIP, m.ServerIP, m.RelayIP} {
		if err := putAddr(b[12+4*i:], a); err != nil {
			return nil, fmt.Errorf("encode DHCP message: %w", err)
		}
	}
	copy(b[offChaddr:], m.HWAddr)
	b = append(b, magicCookie[:]...)
	b = m.Options.appendTo(b)
	for len(b) < minPayloadLen {
		b = append(b, byte(OptPad))
	}
	return b, nil
}

// Parse decodes a message. Options overloaded into the file and sname
// fields (option 52) are read too, in the order RFC 2131 §4.1 gives.
func Parse(b []byte) (*Message, error) {
	if len(b) < fixedLen+cookieLen {
		return nil, fmt.Errorf("%d bytes, a DHCP message has at least %d: %w", len(b), fixedLen+cookieLen, ErrMalformed)
	}
	if !bytes.Equal(b[fixedLen:fixedLen+cookieLen], magicCookie[:]) {
		return nil, fmt.Errorf("no DHCP magic cookie (plain BOOTP?): %w", ErrMalformed)
	}
	hlen := int(b[2])
	if hlen > chaddrLen {
		return nil, fmt.Errorf("hardware address length %d: %w", hlen, ErrMalformed)
	}
	addr := func(off int) netip.Addr { return netip.AddrFrom4([4]byte(b[off : off+4])) }
	m := &Message{
		Op:       b[0],
		XID:      binary.BigEndian.Uint32(b[4:]),
		Secs:     binary.BigEndian.Uint16(b[8:]),
		Flags:    binary.BigEndian.Uint16(b[10:]),
		ClientIP: addr(12),
		YourIP:   addr(16),
		ServerIP: addr(20),
		RelayIP:  addr(24),
		HWAddr:   net.HardwareAddr(bytes.Clone(b[offChaddr : offChaddr+hlen])),
		Options:  Options{},
	}
	if err := m.Options.parse(b[fixedLen+cookieLen:]); err != nil {
		return nil, err
	}
	overload := m.Options[OptOverload]
	delete(m.Options, OptOverload)
	if len(overload) == 1 {
		if overload[0]&1 != 0 {
			if err := m.Options.parse(b[offFile:fixedLen]); err != nil {
				return nil, fmt.Errorf("options in the file field: %w", err)
			}
		}
		if overload[0]&2 != 0 {
			if err := m.Options.parse(b[offSname:offFile]); err != nil {
				return nil, fmt.Errorf("options in the sname field: %w", err)
			}
		}
	}
	return m, nil
}
