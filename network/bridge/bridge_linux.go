package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/network/tap"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Network is the Linux bridge network of one state root.
type Network struct {
	cfg       Config
	names     names
	alloc     *network.Allocator
	dns       []netip.Addr
	nat       nat
	nodeNS    string // path of the node's namespace
	backendNS string // path of the backend namespace

	mu      sync.Mutex // guards the handles against Close
	closed  bool
	node    *netlink.Handle
	backend *netlink.Handle
}

var _ network.Network = (*Network)(nil)

// New sets up the network of cfg.StateDir, or re-attaches to it if it
// exists (after a node restart, or from a second process on the same root).
func New(ctx context.Context, cfg Config) (*Network, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	nm, err := namesFor(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	alloc, err := network.NewAllocator(filepath.Join(cfg.StateDir, "network"), cfg.Subnet)
	if err != nil {
		return nil, err
	}
	dns := cfg.DNS
	if dns == nil {
		if dns, err = network.HostNameservers(); err != nil {
			return nil, err
		}
	}
	tool, err := pickNATTool(cfg.natTool)
	if err != nil {
		return nil, err
	}
	if cfg.TapOwner == 0 {
		cfg.TapOwner = os.Geteuid()
	}
	nodeNS := cfg.NodeNetns
	if nodeNS == "" {
		nodeNS = netns.Self
	}
	n := &Network{
		cfg: cfg, names: nm, alloc: alloc, dns: dns, nodeNS: nodeNS,
		nat: nat{tool: tool, nodeNS: nodeNS, table: nm.table, subnet: cfg.Subnet, nodeDev: nm.nodeVeth},
	}
	unlock, err := alloc.Lock(ctx)
	if err != nil {
		return nil, err
	}
	err = n.setup(ctx)
	if uerr := unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		n.closeHandles()
		return nil, fmt.Errorf("set up VM network %s (%v) for %s: %w", nm.netns, cfg.Subnet, cfg.StateDir, err)
	}
	return n, nil
}

// Namespace is the path of the backend namespace holding bridge and taps.
func (n *Network) Namespace() string { return n.backendNS }

// Bridge is the name of the bridge inside the backend namespace.
func (n *Network) Bridge() string { return bridgeName }

// NodeVeth is the name of the veth end in the node's namespace.
func (n *Network) NodeVeth() string { return n.names.nodeVeth }

// NATTable is the nft table (or iptables chain) in the node's namespace.
func (n *Network) NATTable() string { return n.names.table }

// Leases returns every VM's address.
func (n *Network) Leases(ctx context.Context) (map[string]netip.Addr, error) {
	return n.alloc.Leases(ctx)
}

// usable fails once the network is closed; the caller holds n.mu.
func (n *Network) usable() error {
	if n.closed {
		return network.ErrClosed
	}
	return nil
}

// Attach creates VM id's tap device on the bridge (if missing) and returns
// its endpoint.
func (n *Network) Attach(ctx context.Context, id string, _ network.AttachOptions) (*network.Endpoint, error) {
	if err := network.ValidateID(id); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return nil, err
	}
	var addr netip.Addr
	err := n.alloc.Update(ctx, func(l *network.Leases) error {
		var err error
		if addr, err = l.Acquire(id); err != nil {
			return err
		}
		return n.ensureTap(network.TapName(id))
	})
	if err != nil {
		return nil, fmt.Errorf("attach VM %s: %w", id, err)
	}
	return n.endpoint(id, addr), nil
}

func (n *Network) endpoint(id string, addr netip.Addr) *network.Endpoint {
	mac := network.MACFor(id).String()
	return &network.Endpoint{
		ID: id,
		NIC: vm.NIC{MAC: mac, Attachment: vm.Attachment{
			Kind: vm.AttachTap, Tap: network.TapName(id), Netns: n.backendNS,
		}},
		Guest: network.GuestConfig{
			MAC:     mac,
			Address: netip.PrefixFrom(addr, n.cfg.Subnet.Bits()),
			Gateway: network.Gateway(n.cfg.Subnet),
			MTU:     n.cfg.MTU,
			DNS:     slices.Clone(n.dns),
		},
		IP: addr,
	}
}

// ensureTap makes the tap device name exist, with the MTU, on the bridge,
// up. A tap that exists already (re-attach after a restart, with its VM
// still holding it) is only checked and corrected.
func (n *Network) ensureTap(name string) error {
	br, err := n.backend.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", bridgeName, err)
	}
	link, err := n.backend.LinkByName(name)
	if isNotFound(err) {
		if err := tap.Create(n.backendNS, name, n.cfg.TapOwner); err != nil {
			return err
		}
		link, err = n.backend.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("find tap %s: %w", name, err)
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("%s in %s is a %s, not a tap device", name, n.backendNS, link.Type())
	}
	attrs := link.Attrs()
	if attrs.MTU != n.cfg.MTU {
		if err := n.backend.LinkSetMTU(link, n.cfg.MTU); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", n.cfg.MTU, name, err)
		}
	}
	if attrs.MasterIndex != br.Attrs().Index {
		if err := n.backend.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("add %s to bridge %s: %w", name, bridgeName, err)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := n.backend.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", name, err)
		}
	}
	return nil
}

// Detach deletes VM id's tap device and frees its address.
func (n *Network) Detach(ctx context.Context, id string) error {
	if err := network.ValidateID(id); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	name := network.TapName(id)
	err := n.alloc.Update(ctx, func(l *network.Leases) error {
		link, err := n.backend.LinkByName(name)
		if err == nil {
			err = n.backend.LinkDel(link)
		}
		if err != nil && !isGone(err) {
			return fmt.Errorf("delete tap %s: %w", name, err)
		}
		l.Release(id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("detach VM %s: %w", id, err)
	}
	return nil
}

// Check verifies every piece of the network: namespace, bridge, veth,
// routes, forwarding and NAT.
func (n *Network) Check(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	var errs []error
	if ok, err := netns.IsNamespace(n.backendNS); err != nil || !ok {
		// The handles' sockets keep a removed namespace alive, so
		// without this check everything below would still pass.
		return fmt.Errorf("backend namespace %s is gone (%v)", n.backendNS, err)
	}
	up := func(h *netlink.Handle, ns, name string) netlink.Link {
		link, err := h.LinkByName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s in %s: %w", name, ns, err))
			return nil
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			errs = append(errs, fmt.Errorf("%s in %s is down", name, ns))
		}
		return link
	}
	up(n.backend, n.backendNS, bridgeName)
	up(n.backend, n.backendNS, uplinkName)
	if nodeLink := up(n.node, n.nodeNS, n.names.nodeVeth); nodeLink != nil {
		if err := n.checkRoute(nodeLink); err != nil {
			errs = append(errs, err)
		}
	}
	if on, err := IPForward(n.backendNS); err != nil || !on {
		errs = append(errs, fmt.Errorf("ip_forward is off in %s (%v)", n.backendNS, err))
	}
	if n.cfg.EnableIPForward {
		if on, err := IPForward(n.nodeNS); err != nil || !on {
			errs = append(errs, fmt.Errorf("ip_forward is off in %s (%v)", n.nodeNS, err))
		}
	}
	if err := n.nat.check(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("VM network %s: %w", n.names.netns, err)
	}
	return nil
}

func (n *Network) checkRoute(nodeLink netlink.Link) error {
	routes, err := n.node.RouteList(nodeLink, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", n.names.nodeVeth, err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && p == n.cfg.Subnet && r.Gw.Equal(n.cfg.backendAddr().AsSlice()) {
			return nil
		}
	}
	return fmt.Errorf("no route to %v via %v on %s in %s", n.cfg.Subnet, n.cfg.backendAddr(), n.names.nodeVeth, n.nodeNS)
}

// Close releases this process's netlink sockets; the network and its VMs'
// taps stay.
func (n *Network) Close(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	n.closeHandles()
	return nil
}

func (n *Network) closeHandles() {
	for _, h := range []*netlink.Handle{n.node, n.backend} {
		if h != nil {
			h.Close()
		}
	}
	n.node, n.backend = nil, nil
}

// ReleasePod implements network.Network: every VM has its own address here,
// freed by Detach.
func (n *Network) ReleasePod(context.Context, string) error { return nil }

// Teardown removes the network: NAT rules, veth, the backend namespace with
// bridge and taps, and the leases.
func (n *Network) Teardown(ctx context.Context) error {
	// Close first: a netlink socket inside the backend namespace would
	// keep it, and its devices, alive after the unmount.
	if err := n.Close(ctx); err != nil {
		return err
	}
	return Cleanup(ctx, n.cfg)
}

// Cleanup removes whatever the network of cfg.StateDir left behind, found by
// the names derived from the state root, without needing a working network:
// after a crash, or for `doctor --fix`. Missing pieces are no error.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	nm, err := namesFor(cfg.StateDir)
	if err != nil {
		return err
	}
	alloc, err := network.NewAllocator(filepath.Join(cfg.StateDir, "network"), cfg.Subnet)
	if err != nil {
		return err
	}
	unlock, err := alloc.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	nodeNS := cfg.NodeNetns
	if nodeNS == "" {
		nodeNS = netns.Self
	}
	var errs []error
	if tool, err := pickNATTool(cfg.natTool); err == nil {
		errs = append(errs, removeNAT(ctx, nodeNS, tool, nm.table))
	}
	if h, err := openHandle(nodeNS); err != nil {
		errs = append(errs, err)
	} else {
		// Deleting one end of a veth pair deletes both.
		if link, err := h.LinkByName(nm.nodeVeth); err == nil {
			if err := h.LinkDel(link); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", nm.nodeVeth, err))
			}
		}
		h.Close()
	}
	errs = append(errs, netns.Remove(netns.Path(nm.netns)), alloc.Reset())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up VM network %s: %w", nm.netns, err)
	}
	cfg.Logger.InfoContext(ctx, "network removed", "netns", nm.netns, "subnet", cfg.Subnet)
	return nil
}
