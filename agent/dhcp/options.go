package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// OptionCode is a DHCP option tag (RFC 2132).
type OptionCode byte

// Options the client sends or reads (RFC 2132 sections in comments).
const (
	OptPad            OptionCode = 0   // §3.1
	OptSubnetMask     OptionCode = 1   // §3.3
	OptRouter         OptionCode = 3   // §3.5
	OptDNS            OptionCode = 6   // §3.8
	OptHostname       OptionCode = 12  // §3.14
	OptDomainName     OptionCode = 15  // §3.17
	OptRequestedIP    OptionCode = 50  // §9.1
	OptLeaseTime      OptionCode = 51  // §9.2
	OptOverload       OptionCode = 52  // §9.3
	OptMessageType    OptionCode = 53  // §9.6
	OptServerID       OptionCode = 54  // §9.7
	OptParamRequest   OptionCode = 55  // §9.8
	OptMessage        OptionCode = 56  // §9.9
	OptMaxMessageSize OptionCode = 57  // §9.10
	OptRenewalTime    OptionCode = 58  // §9.11
	OptRebindingTime  OptionCode = 59  // §9.12
	OptClientID       OptionCode = 61  // §9.14
	OptEnd            OptionCode = 255 // §3.2
)

// MessageType is the value of option 53 (RFC 2132 §9.6).
type MessageType byte

const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

func (t MessageType) String() string {
	names := [...]string{"", "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return fmt.Sprintf("type %d", byte(t))
}

// Options maps option codes to their data. An option that appears more
// than once in a message is concatenated, as RFC 3396 §7 asks.
type Options map[OptionCode][]byte

// parseOptions reads options from b into o until the End option or the
// end of b (some servers omit End when the field is full).
func (o Options) parse(b []byte) error {
	for i := 0; i < len(b); {
		code := OptionCode(b[i])
		switch code {
		case OptPad:
			i++
			continue
		case OptEnd:
			return nil
		}
		if i+1 >= len(b) {
			return fmt.Errorf("option %d: length byte missing: %w", code, ErrMalformed)
		}
		n := int(b[i+1])
		if i+2+n > len(b) {
			return fmt.Errorf("option %d: %d bytes announced, %d left: %w", code, n, len(b)-i-2, ErrMalformed)
		}
		o[code] = append(o[code], b[i+2:i+2+n]...)
		i += 2 + n
	}
	return nil
}

// appendTo encodes the options after b, message type first (some servers
// look for it there), the rest in ascending order, then End. Data longer
// than 255 bytes is split into several instances (RFC 3396).
func (o Options) appendTo(b []byte) []byte {
	codes := make([]OptionCode, 0, len(o))
	for c := range o {
		if c != OptPad && c != OptEnd && c != OptMessageType {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	if _, ok := o[OptMessageType]; ok {
		codes = slices.Insert(codes, 0, OptMessageType)
	}
	for _, c := range codes {
		data := o[c]
		for {
			n := min(len(data), 255)
			b = append(b, byte(c), byte(n))
			b = append(b, data[:n]...)
			data = data[n:]
			if len(data) == 0 {
				break
			}
		}
	}
	return append(b, byte(OptEnd))
}

// MessageType is option 53, or 0 when absent or malformed.
func (o Options) MessageType() MessageType {
	if v := o[OptMessageType]; len(v) == 1 {
		return MessageType(v[0])
	}
	return 0
}

// Addr is an option holding one IPv4 address.
func (o Options) Addr(code OptionCode) (netip.Addr, bool) {
	v := o[code]
	if len(v) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

// Addrs is an option holding a list of IPv4 addresses.
func (o Options) Addrs(code OptionCode) ([]netip.Addr, bool) {
	v := o[code]
	if len(v) == 0 || len(v)%4 != 0 {
		return nil, false
	}
	out := make([]netip.Addr, 0, len(v)/4)
	for i := 0; i < len(v); i += 4 {
		out = append(out, netip.AddrFrom4([4]byte(v[i:i+4])))
	}
	return out, true
}

// Infinite is the lease time 0xffffffff (RFC 2131 §3.3).
const Infinite = time.Duration(1<<63 - 1)

// Seconds is an option holding a 32-bit number of seconds (lease, T1,
// T2); 0xffffffff is Infinite.
func (o Options) Seconds(code OptionCode) (time.Duration, bool) {
	v := o[code]
	if len(v) != 4 {
		return 0, false
	}
	s := binary.BigEndian.Uint32(v)
	if s == 0xffffffff {
		return Infinite, true
	}
	return time.Duration(s) * time.Second, true
}

// SetAddr sets an option to one IPv4 address.
func (o Options) SetAddr(code OptionCode, a netip.Addr) {
	b := a.As4()
	o[code] = b[:]
}
