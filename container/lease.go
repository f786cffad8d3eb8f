package container

import (
	"fmt"
	"net/netip"
)

// recordLease keeps the address a DHCP guest obtained (vz NAT: bootpd
// chose it, the host learns it from Setup's response) in the endpoint and
// the VM record, so that IP (ps, the pod IP, probes) has it, also
// after a node restart. Endpoints with a known address are left alone.
func (s *VM) recordLease(addrs []string) error {
	ep := s.rec.Endpoint
	if ep == nil || !ep.Guest.DHCP || ep.IP.IsValid() {
		return nil
	}
	ip, err := leasedIP(addrs)
	if err != nil {
		return fmt.Errorf("guest address from DHCP: %w", err)
	}
	ep.IP = ip
	if err := writeRecord(s.dir, s.rec); err != nil {
		return fmt.Errorf("record the guest's DHCP address %s: %w", ip, err)
	}
	return nil
}

// leasedIP is the first IPv4 address among the guest's addresses (CIDR
// form, as SetupResponse.addresses has them).
func leasedIP(addrs []string) (netip.Addr, error) {
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("guest reported address %q: %w", a, err)
		}
		if p.Addr().Is4() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("the guest reported no IPv4 address (got %v)", addrs)
}
