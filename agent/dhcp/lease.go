package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Lease is an address granted by a server and what came with it.
type Lease struct {
	// Address is the leased address with the subnet's prefix length.
	Address netip.Prefix
	// Router is the first router offered; invalid when none was.
	Router netip.Addr
	// DNS lists the offered name servers, in order.
	DNS []netip.Addr
	// Domain is the offered domain name (option 15), if any.
	Domain string
	// ServerID identifies the server; renewals go to it.
	ServerID netip.Addr
	// Duration of the lease; Infinite for a permanent one.
	Duration time.Duration
	// T1 and T2 are when renewing and rebinding start, from Start.
	T1, T2 time.Duration
	// Start is when the request that obtained the lease was sent: lease
	// times count from there (RFC 2131 §4.4.1).
	Start time.Time
}

// Expiry is when the lease ends (the zero time for an infinite lease).
func (l *Lease) Expiry() time.Time {
	if l.Duration == Infinite {
		return time.Time{}
	}
	return l.Start.Add(l.Duration)
}

// naturalMask is the classful prefix length of a, for a server that sends
// no subnet mask (RFC 2131 §4.3.1 leaves the mask to the server; before
// subnetting, RFC 791 classes defined it).
func naturalMask(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

// leaseFromAck reads a lease from an ACK to a request sent at start.
// server is the identifier to fall back to when the ACK omits option 54.
func leaseFromAck(ack *Message, server netip.Addr, start time.Time) (*Lease, error) {
	addr := ack.YourIP
	if !addr.Is4() || addr.IsUnspecified() {
		return nil, fmt.Errorf("ACK without an address (yiaddr %s): %w", addr, ErrMalformed)
	}
	bits := naturalMask(addr)
	if m := ack.Options[OptSubnetMask]; m != nil {
		ones, size := net.IPMask(m).Size()
		if size != 32 || ones == 0 {
			return nil, fmt.Errorf("ACK with subnet mask % x: %w", m, ErrMalformed)
		}
		bits = ones
	}
	l := &Lease{Address: netip.PrefixFrom(addr, bits), ServerID: server, Start: start}
	if id, ok := ack.Options.Addr(OptServerID); ok {
		l.ServerID = id
	}
	if rs, ok := ack.Options.Addrs(OptRouter); ok {
		l.Router = rs[0]
	}
	l.DNS, _ = ack.Options.Addrs(OptDNS)
	l.Domain = string(ack.Options[OptDomainName])
	var ok bool
	if l.Duration, ok = ack.Options.Seconds(OptLeaseTime); !ok || l.Duration == 0 {
		// RFC 2131 §4.3.1 table 3: the lease time MUST be in an ACK.
		return nil, fmt.Errorf("ACK without a lease time: %w", ErrMalformed)
	}
	if l.Duration == Infinite {
		l.T1, l.T2 = Infinite, Infinite
		return l, nil
	}
	// Defaults 0.5 and 0.875 of the lease (RFC 2131 §4.4.5); the server's
	// values only when they are ordered T1 < T2 < lease.
	l.T1, l.T2 = l.Duration/2, l.Duration*7/8
	t1, ok1 := ack.Options.Seconds(OptRenewalTime)
	t2, ok2 := ack.Options.Seconds(OptRebindingTime)
	if ok2 && t2 > 0 && t2 < l.Duration {
		l.T2 = t2
	}
	if ok1 && t1 > 0 && t1 < l.T2 {
		l.T1 = t1
	}
	if l.T1 >= l.T2 {
		l.T1 = l.T2 / 2
	}
	return l, nil
}
