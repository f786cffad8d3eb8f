package hostinfo

import (
	"fmt"
	"net"
	"slices"
)

// NodeIPs returns the addresses of interface iface that other machines can
// reach the node at, IPv4 before IPv6. With iface "" it uses the interface
// of the default route and keeps only global unicast addresses (no
// loopback or link-local); a named interface keeps every address except
// link-local ones, so "lo" is a valid choice in tests.
func NodeIPs(iface string) ([]net.IP, error) {
	globalOnly := iface == ""
	if iface == "" {
		var err error
		if iface, err = DefaultInterface(); err != nil {
			return nil, err
		}
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
	}
	var ips []net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := ipn.IP
		if ip.IsLinkLocalUnicast() || (globalOnly && !ip.IsGlobalUnicast()) {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		ips = append(ips, ip)
	}
	// Stable: IPv4 first, each family in the interface's order.
	slices.SortStableFunc(ips, func(a, b net.IP) int { return len(a) - len(b) })
	if len(ips) == 0 {
		return nil, fmt.Errorf("interface %s has no usable address", iface)
	}
	return ips, nil
}

// DefaultInterface names the interface of the default route: the IPv4 one
// with the lowest metric, else the IPv6 one.
func DefaultInterface() (string, error) { return defaultInterface() }
