//go:build darwin

package hostinfo

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/route"
)

func defaultInterface() (string, error) {
	rib, err := route.FetchRIB(syscall.AF_UNSPEC, route.RIBTypeRoute, 0)
	if err != nil {
		return "", fmt.Errorf("read routing table: %w", err)
	}
	msgs, err := route.ParseRIB(route.RIBTypeRoute, rib)
	if err != nil {
		return "", fmt.Errorf("parse routing table: %w", err)
	}
	var v4, v6 int // interface indexes; 0 = none
	for _, m := range msgs {
		rm, ok := m.(*route.RouteMessage)
		if !ok || rm.Flags&syscall.RTF_UP == 0 || rm.Flags&syscall.RTF_GATEWAY == 0 || len(rm.Addrs) <= syscall.RTAX_NETMASK {
			continue
		}
		// Interface-scoped defaults (RTF_IFSCOPE) exist for every
		// interface; the unscoped one is the system's choice.
		if rm.Flags&syscall.RTF_IFSCOPE != 0 {
			continue
		}
		switch dst := rm.Addrs[syscall.RTAX_DST].(type) {
		case *route.Inet4Addr:
			if dst.IP == [4]byte{} && zeroMask(rm.Addrs[syscall.RTAX_NETMASK]) && v4 == 0 {
				v4 = rm.Index
			}
		case *route.Inet6Addr:
			if dst.IP == [16]byte{} && zeroMask(rm.Addrs[syscall.RTAX_NETMASK]) && v6 == 0 {
				v6 = rm.Index
			}
		}
	}
	for _, idx := range []int{v4, v6} {
		if idx == 0 {
			continue
		}
		ifi, err := net.InterfaceByIndex(idx)
		if err != nil {
			return "", fmt.Errorf("find interface of the default route: %w", err)
		}
		return ifi.Name, nil
	}
	return "", errors.New("no default route: pass the node IP or interface explicitly")
}

func zeroMask(a route.Addr) bool {
	switch m := a.(type) {
	case nil:
		return true
	case *route.Inet4Addr:
		return m.IP == [4]byte{}
	case *route.Inet6Addr:
		return m.IP == [16]byte{}
	}
	return false
}
