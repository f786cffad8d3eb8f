package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/dhcp"
)

// applyLease puts a DHCP lease on link index: the address, with the
// lease's remaining time as its kernel lifetime (so an address that could
// not be renewed goes away when the lease ends, as RFC 2131 §4.4.5 asks),
// and the default route via the router. old, when not nil, is the lease
// it replaces; its address is removed if it differs.
func applyLease(nl *rtnl, index int32, old, next *dhcp.Lease) error {
	if old != nil && old.Address != next.Address {
		if err := nl.delAddr(index, old.Address); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return err
		}
	}
	if err := nl.addAddrLifetime(index, next.Address, leaseLifetime(next, time.Now())); err != nil {
		return err
	}
	r := next.Router
	if !r.IsValid() {
		return nil
	}
	if !next.Address.Contains(r) {
		// A router outside the subnet (a /32 lease) is reached on-link.
		if err := nl.addRoute(netip.PrefixFrom(r, 32), netip.Addr{}, index); err != nil {
			return err
		}
	}
	return nl.addRoute(netip.MustParsePrefix("0.0.0.0/0"), r, index)
}

// infiniteLifetime is the kernel's "forever" (INFINITY_LIFE_TIME,
// include/net/addrconf.h).
const infiniteLifetime = math.MaxUint32

// leaseLifetime is the seconds left on a lease at now, at least 1.
func leaseLifetime(l *dhcp.Lease, now time.Time) uint32 {
	if l.Duration == dhcp.Infinite {
		return infiniteLifetime
	}
	left := l.Expiry().Sub(now)
	secs := (left + time.Second - 1) / time.Second
	return uint32(min(max(secs, 1), infiniteLifetime-1))
}

// ifaddrmsg builds struct ifaddrmsg with the address attributes.
func ifaddrmsg(index int32, p netip.Prefix) []byte {
	a := p.Addr()
	b := []byte{family(a), byte(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE}
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	b = nlAttr(b, unix.IFA_LOCAL, a.AsSlice())
	return nlAttr(b, unix.IFA_ADDRESS, a.AsSlice())
}

// addAddrLifetime adds (or replaces, refreshing the lifetime) an IPv4
// address that the kernel removes after lifetime seconds.
func (r *rtnl) addAddrLifetime(index int32, p netip.Prefix, lifetime uint32) error {
	b := ifaddrmsg(index, p)
	if p.Bits() < 31 {
		bcast := p.Masked().Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			bcast[i/8] |= 0x80 >> (i % 8)
		}
		b = nlAttr(b, unix.IFA_BROADCAST, bcast[:])
	}
	// struct ifa_cacheinfo: preferred and valid lifetimes, then two
	// timestamps the kernel fills in.
	ci := binary.NativeEndian.AppendUint32(nil, lifetime)
	ci = binary.NativeEndian.AppendUint32(ci, lifetime)
	ci = append(ci, make([]byte, 8)...)
	b = nlAttr(b, unix.IFA_CACHEINFO, ci)
	if _, err := r.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b); err != nil {
		return fmt.Errorf("add address %s (lifetime %d s) to link %d: %w", p, lifetime, index, err)
	}
	return nil
}

// delAddr removes an address from a link.
func (r *rtnl) delAddr(index int32, p netip.Prefix) error {
	if _, err := r.do(unix.RTM_DELADDR, 0, ifaddrmsg(index, p)); err != nil {
		return fmt.Errorf("remove address %s from link %d: %w", p, index, err)
	}
	return nil
}
