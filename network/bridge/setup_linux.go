package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/netns"
)

// ipForward is the IPv4 forwarding switch; opened from a thread inside a
// namespace it is that namespace's (net sysctls are per namespace).
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// openHandle returns a rtnetlink handle whose socket lives in the
// namespace at path; it keeps working wherever the caller's thread is.
func openHandle(path string) (*netlink.Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer f.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(int(f.Fd())), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", path, err)
	}
	return h, nil
}

// ensureBackendNamespace returns the backend namespace's path, creating
// the namespace unless it exists.
func ensureBackendNamespace(name string) (path string, created bool, err error) {
	path = netns.Path(name)
	ok, err := netns.IsNamespace(path)
	if err != nil {
		return "", false, err
	}
	if ok {
		return path, false, nil
	}
	// A plain file here is a leftover of a namespace that died with a
	// reboot; replace it.
	if err := netns.Remove(path); err != nil {
		return "", false, err
	}
	if _, err := netns.Create(name); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// checkConflicts refuses a subnet or link net that the node's namespace
// already routes elsewhere: replacing that route would cut off whatever
// uses it (another state root's VMs, or the host's own network).
func (n *Network) checkConflicts() error {
	ours := 0
	if link, err := n.node.LinkByName(n.names.nodeVeth); err == nil {
		ours = link.Attrs().Index
	}
	routes, err := n.node.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes in %s: %w", n.nodeNS, err)
	}
	for _, r := range routes {
		dst, ok := prefixOf(r.Dst)
		if !ok || r.LinkIndex == ours {
			continue
		}
		if err := n.conflict(dst, r.LinkIndex, "route"); err != nil {
			return err
		}
	}
	addrs, err := n.node.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses in %s: %w", n.nodeNS, err)
	}
	for _, a := range addrs {
		dst, ok := prefixOf(a.IPNet)
		if !ok || a.LinkIndex == ours {
			continue
		}
		if err := n.conflict(dst, a.LinkIndex, "address"); err != nil {
			return err
		}
	}
	return nil
}

func (n *Network) conflict(p netip.Prefix, linkIndex int, what string) error {
	for _, mine := range []netip.Prefix{n.cfg.Subnet, n.cfg.LinkNet} {
		if p.Bits() == 0 || !mine.Overlaps(p) {
			continue
		}
		dev := fmt.Sprintf("ifindex %d", linkIndex)
		if link, err := n.node.LinkByIndex(linkIndex); err == nil {
			dev = link.Attrs().Name
		}
		if what == "route" && p.Bits() < mine.Bits() {
			// A wider route (a VPN's 10.0.0.0/8, say) loses only the
			// part our more specific route takes: worth a warning.
			n.cfg.Logger.Warn("VM network shadows part of a wider route", "ours", mine, "route", p, "dev", dev)
			continue
		}
		return fmt.Errorf("%v is already in use in %s: %s %v on %s (another state root or the host's network; configure another subnet or link net)",
			mine, n.nodeNS, what, p, dev)
	}
	return nil
}

// prefixOf is the network ipn names, host bits cleared.
func prefixOf(ipn *net.IPNet) (netip.Prefix, bool) {
	p, ok := hostPrefixOf(ipn)
	return p.Masked(), ok
}

// hostPrefixOf is ipn as an interface address (host bits kept).
func hostPrefixOf(ipn *net.IPNet) (netip.Prefix, bool) {
	if ipn == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := ipn.Mask.Size()
	return netip.PrefixFrom(addr.Unmap(), ones), true
}

// ensureBridge makes the bridge with the gateway address and a fixed MAC:
// a Linux bridge otherwise takes the lowest MAC of its ports, which changes
// as taps come and go and makes every guest relearn its gateway.
func (n *Network) ensureBridge() (netlink.Link, error) {
	mac := network.MACFor(n.names.netns)
	link, err := n.backend.LinkByName(bridgeName)
	if isNotFound(err) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, MTU: n.cfg.MTU, HardwareAddr: mac}}
		if err := n.backend.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", bridgeName, err)
		}
		link, err = n.backend.LinkByName(bridgeName)
	}
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", bridgeName, err)
	}
	if link.Type() != "bridge" {
		return nil, fmt.Errorf("%s in %s is a %s, not a bridge", bridgeName, n.backendNS, link.Type())
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := n.backend.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("set MAC of %s: %w", bridgeName, err)
		}
	}
	gw := netip.PrefixFrom(network.Gateway(n.cfg.Subnet), n.cfg.Subnet.Bits())
	if err := n.configureLink(n.backend, link, gw); err != nil {
		return nil, err
	}
	return link, nil
}

// ensureVeth makes the veth pair between the node's namespace and the
// backend's, recreating it if only one end survived.
func (n *Network) ensureVeth() (nodeLink, uplink netlink.Link, err error) {
	nodeLink, nodeErr := n.node.LinkByName(n.names.nodeVeth)
	uplink, upErr := n.backend.LinkByName(uplinkName)
	// A veth's IFLA_LINK is its peer's index in the peer's namespace;
	// both ends pointing at each other is a pair.
	paired := nodeErr == nil && upErr == nil && nodeLink.Type() == "veth" && uplink.Type() == "veth" &&
		nodeLink.Attrs().ParentIndex == uplink.Attrs().Index && uplink.Attrs().ParentIndex == nodeLink.Attrs().Index
	if !paired {
		// Deleting one end of a pair deletes the other: look again.
		if nodeErr == nil {
			if err := n.node.LinkDel(nodeLink); err != nil && !isGone(err) {
				return nil, nil, fmt.Errorf("delete stale %s: %w", n.names.nodeVeth, err)
			}
		}
		if uplink, err := n.backend.LinkByName(uplinkName); err == nil {
			if err := n.backend.LinkDel(uplink); err != nil && !isGone(err) {
				return nil, nil, fmt.Errorf("delete stale %s: %w", uplinkName, err)
			}
		}
		if nodeLink, uplink, err = n.createVeth(); err != nil {
			return nil, nil, err
		}
	}
	if err := n.configureLink(n.node, nodeLink, netip.PrefixFrom(n.cfg.nodeAddr(), 30)); err != nil {
		return nil, nil, err
	}
	if err := n.configureLink(n.backend, uplink, netip.PrefixFrom(n.cfg.backendAddr(), 30)); err != nil {
		return nil, nil, err
	}
	return nodeLink, uplink, nil
}

func (n *Network) createVeth() (nodeLink, uplink netlink.Link, err error) {
	backend, err := os.Open(n.backendNS)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", n.backendNS, err)
	}
	defer backend.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.names.nodeVeth, MTU: n.cfg.MTU},
		PeerName:      uplinkName,
		PeerNamespace: netlink.NsFd(int(backend.Fd())),
	}
	if err := n.node.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create veth %s/%s: %w", n.names.nodeVeth, uplinkName, err)
	}
	if nodeLink, err = n.node.LinkByName(n.names.nodeVeth); err != nil {
		return nil, nil, fmt.Errorf("find new veth %s: %w", n.names.nodeVeth, err)
	}
	if uplink, err = n.backend.LinkByName(uplinkName); err != nil {
		return nil, nil, fmt.Errorf("find new veth %s in %s: %w", uplinkName, n.backendNS, err)
	}
	return nodeLink, uplink, nil
}

// configureLink gives link exactly one IPv4 address, the MTU, and brings
// it up; addresses of an earlier configuration are removed.
func (n *Network) configureLink(h *netlink.Handle, link netlink.Link, addr netip.Prefix) error {
	name := link.Attrs().Name
	if link.Attrs().MTU != n.cfg.MTU {
		if err := h.LinkSetMTU(link, n.cfg.MTU); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", n.cfg.MTU, name, err)
		}
	}
	have, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, a := range have {
		if p, ok := hostPrefixOf(a.IPNet); ok && p == addr {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove old address %v from %s: %w", a.IPNet, name, err)
		}
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
	if err := h.AddrReplace(link, want); err != nil {
		return fmt.Errorf("add address %v to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	return nil
}

// ensureRoutes points the node at the VMs and the backend at the node.
func (n *Network) ensureRoutes(nodeLink, uplink netlink.Link) error {
	toVMs := &netlink.Route{
		LinkIndex: nodeLink.Attrs().Index,
		Dst:       &net.IPNet{IP: n.cfg.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(n.cfg.Subnet.Bits(), 32)},
		Gw:        n.cfg.backendAddr().AsSlice(),
	}
	if err := n.node.RouteReplace(toVMs); err != nil {
		return fmt.Errorf("route %v via %v in %s: %w", n.cfg.Subnet, n.cfg.backendAddr(), n.nodeNS, err)
	}
	// A route of an earlier subnet on our veth would still capture it.
	routes, err := n.node.RouteList(nodeLink, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", n.names.nodeVeth, err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && r.Protocol != unix.RTPROT_KERNEL && p != n.cfg.Subnet {
			if err := n.node.RouteDel(&r); err != nil {
				return fmt.Errorf("remove old route %v: %w", p, err)
			}
		}
	}
	def := &netlink.Route{LinkIndex: uplink.Attrs().Index, Gw: n.cfg.nodeAddr().AsSlice()}
	if err := n.backend.RouteReplace(def); err != nil {
		return fmt.Errorf("default route via %v in %s: %w", n.cfg.nodeAddr(), n.backendNS, err)
	}
	return nil
}

func setIPForward(nsPath string) error {
	return netns.Do(nsPath, func() error {
		if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable %s in %s: %w", ipForward, nsPath, err)
		}
		return nil
	})
}

// IPForward reports net.ipv4.ip_forward of the namespace at nsPath.
func IPForward(nsPath string) (bool, error) {
	var on bool
	err := netns.Do(nsPath, func() error {
		data, err := os.ReadFile(ipForward)
		if err != nil {
			return fmt.Errorf("read %s in %s: %w", ipForward, nsPath, err)
		}
		on = strings.TrimSpace(string(data)) == "1"
		return nil
	})
	return on, err
}

// setup builds or re-attaches to the whole network; the caller holds the
// allocator's lock, so concurrent setups on one state root take turns.
func (n *Network) setup(ctx context.Context) error {
	log := n.cfg.Logger.With("netns", n.names.netns, "subnet", n.cfg.Subnet)
	if ok, err := netns.IsNamespace(n.nodeNS); err != nil || !ok {
		return fmt.Errorf("node network namespace %s: not a namespace (%v)", n.nodeNS, err)
	}
	var err error
	if n.node, err = openHandle(n.nodeNS); err != nil {
		return err
	}
	if err := n.checkConflicts(); err != nil {
		return err
	}
	var created bool
	if n.backendNS, created, err = ensureBackendNamespace(n.names.netns); err != nil {
		return err
	}
	if n.backend, err = openHandle(n.backendNS); err != nil {
		return err
	}
	lo, err := n.backend.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", n.backendNS, err)
	}
	if err := n.backend.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo in %s: %w", n.backendNS, err)
	}
	if _, err := n.ensureBridge(); err != nil {
		return err
	}
	nodeLink, uplink, err := n.ensureVeth()
	if err != nil {
		return err
	}
	if err := n.ensureRoutes(nodeLink, uplink); err != nil {
		return err
	}
	if err := setIPForward(n.backendNS); err != nil {
		return err
	}
	if n.cfg.EnableIPForward {
		if err := setIPForward(n.nodeNS); err != nil {
			return err
		}
	} else if on, err := IPForward(n.nodeNS); err == nil && !on {
		log.WarnContext(ctx, "ip_forward is off in the node's namespace: VMs reach the node and each other, nothing beyond (EnableIPForward turns it on)")
	}
	if err := n.nat.ensure(ctx); err != nil {
		return err
	}
	log.InfoContext(ctx, "network ready", "created", created, "gateway", network.Gateway(n.cfg.Subnet), "nat", n.nat.tool)
	return nil
}

// isNotFound reports a failed lookup of a link by name.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// isGone reports an operation on a link that no longer exists.
func isGone(err error) bool {
	return isNotFound(err) || errors.Is(err, unix.ENODEV)
}
