package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// Setup configures the guest: clock, hostname, sysctls, Rosetta, network
// (static addresses and routes), DNS and hosts files.
func (s *Server) Setup(ctx context.Context, req *api.SetupRequest) (*api.SetupResponse, error) {
	if f := s.cfg.ReseedRandom; f != nil {
		// First: nothing a container does may use the template's CRNG.
		if err := f(); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	if ns := req.GetTimeUnixNs(); ns != 0 {
		if err := s.cfg.SetClock(time.Unix(0, ns)); err != nil {
			return nil, fmt.Errorf("setup: set clock: %w", err)
		}
		if f := s.cfg.ClockSet; f != nil {
			s.goSafe("clock calibration", func() { f(s.ctx) })
		}
	}
	if h := req.GetHostname(); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return nil, fmt.Errorf("setup: set hostname %q: %w", h, err)
		}
		s.mu.Lock()
		s.hostname = h
		s.mu.Unlock()
	}
	for k, v := range req.GetSysctls() {
		if err := writeSysctl(s.cfg.ProcSysDir, k, v); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	if req.GetRosetta() {
		if err := s.setupRosetta(ctx); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	if len(req.GetInterfaces()) > 0 {
		// virtio_net may still be loading, or its device still probing.
		if err := s.waitModules(ctx, "setup", "virtio_net"); err != nil {
			return nil, err
		}
	}
	adopt := s.cfg.TemplateGuest
	addrs, err := configureNetwork(req.GetInterfaces(), req.GetRoutes(), adopt)
	for deadline := time.Now().Add(10 * time.Second); errors.Is(err, ErrNotFound) && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
		addrs, err = configureNetwork(req.GetInterfaces(), req.GetRoutes(), adopt)
	}
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if err := writeEtcFiles(filepath.Join(s.cfg.StateDir, "etc"), req); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	s.setupDone.Store(true)
	return &api.SetupResponse{Addresses: addrs}, nil
}

// writeSysctl writes a kernel parameter ("net.ipv4.ip_forward") under
// procSys.
func writeSysctl(procSys, key, value string) error {
	if key == "" || strings.Contains(key, "/") || strings.Contains(key, "..") {
		return fmt.Errorf("sysctl %q: %w", key, ErrInvalidArgument)
	}
	p := filepath.Join(procSys, strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// configureNetwork sets up the interfaces (matched by MAC) and routes and
// returns the addresses assigned. adopt: the guest was resumed from a
// template, whose NICs still carry the template machine's MACs (the
// device reads its MAC property only at a reset, which a driver's bind
// does not do), so an interface no link has yet takes the next Ethernet
// link in index (PCI) order that no requested MAC names.
func configureNetwork(ifaces []*api.Interface, routes []*api.Route, adopt bool) ([]string, error) {
	if len(ifaces) == 0 && len(routes) == 0 {
		return nil, nil
	}
	nl, err := openRtnl()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	links, err := nl.links()
	if err != nil {
		return nil, err
	}
	if adopt {
		if links, err = adoptLinks(nl, links, ifaces); err != nil {
			return nil, err
		}
	}
	var addrs []string
	for _, iface := range ifaces {
		got, err := configureInterface(nl, links, iface)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, got...)
	}
	if len(routes) > 0 {
		// Names changed above.
		if links, err = nl.links(); err != nil {
			return nil, err
		}
	}
	for _, r := range routes {
		if err := addRoute(nl, links, r); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// adoptLinks gives each requested MAC no link has to a free Ethernet link
// and returns the links as they are now.
func adoptLinks(nl *rtnl, links []nlLink, ifaces []*api.Interface) ([]nlLink, error) {
	wanted := map[string]bool{}
	for _, iface := range ifaces {
		if mac, err := net.ParseMAC(iface.GetMac()); err == nil {
			wanted[mac.String()] = true
		}
	}
	var free []int
	for i, l := range links {
		if len(l.mac) == 6 && l.flags&unix.IFF_LOOPBACK == 0 && !wanted[l.mac.String()] {
			free = append(free, i)
		}
	}
	slices.SortFunc(free, func(a, b int) int { return int(links[a].index - links[b].index) })
	for _, iface := range ifaces {
		mac, err := net.ParseMAC(iface.GetMac())
		if err != nil {
			return nil, fmt.Errorf("interface mac %q: %w", iface.GetMac(), ErrInvalidArgument)
		}
		if slices.ContainsFunc(links, func(l nlLink) bool { return l.mac.String() == mac.String() }) {
			continue
		}
		if len(free) == 0 {
			return links, nil // not there yet: the caller looks again
		}
		l := &links[free[0]]
		free = free[1:]
		if err := nl.setLinkMAC(l.index, mac); err != nil {
			return nil, err
		}
		l.mac = mac
	}
	return links, nil
}

func configureInterface(nl *rtnl, links []nlLink, iface *api.Interface) ([]string, error) {
	mac, err := net.ParseMAC(iface.GetMac())
	if err != nil {
		return nil, fmt.Errorf("interface mac %q: %w", iface.GetMac(), ErrInvalidArgument)
	}
	var link *nlLink
	for i := range links {
		if links[i].mac.String() == mac.String() {
			link = &links[i]
			break
		}
	}
	if link == nil {
		return nil, fmt.Errorf("interface with mac %s: %w", mac, ErrNotFound)
	}
	name := iface.GetName()
	if name == "" {
		name = "eth0"
	}
	var prefixes []netip.Prefix
	for _, a := range iface.GetAddresses() {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("interface %s address %q: %w", name, a, ErrInvalidArgument)
		}
		prefixes = append(prefixes, p)
	}
	if link.name != name {
		// The kernel renames only links that are down.
		if err := nl.setLinkUp(link.index, false); err != nil {
			return nil, err
		}
		if err := nl.setLinkAttrs(link.index, name, 0); err != nil {
			return nil, err
		}
	}
	if mtu := iface.GetMtu(); mtu != 0 && mtu != link.mtu {
		if err := nl.setLinkAttrs(link.index, "", mtu); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, p := range prefixes {
		if err := nl.addAddr(link.index, p); err != nil {
			return nil, err
		}
		out = append(out, p.String())
	}
	if err := nl.setLinkUp(link.index, true); err != nil {
		return nil, err
	}
	return out, nil
}

func addRoute(nl *rtnl, links []nlLink, r *api.Route) error {
	dst := netip.MustParsePrefix("0.0.0.0/0")
	var gw netip.Addr
	if g := r.GetGateway(); g != "" {
		var err error
		if gw, err = netip.ParseAddr(g); err != nil {
			return fmt.Errorf("route gateway %q: %w", g, ErrInvalidArgument)
		}
		if gw.Is6() {
			dst = netip.MustParsePrefix("::/0")
		}
	}
	if d := r.GetDestination(); d != "" {
		var err error
		if dst, err = netip.ParsePrefix(d); err != nil {
			return fmt.Errorf("route destination %q: %w", d, ErrInvalidArgument)
		}
	}
	var oif int32
	if n := r.GetInterfaceName(); n != "" {
		for _, l := range links {
			if l.name == n {
				oif = l.index
			}
		}
		if oif == 0 {
			return fmt.Errorf("route %s: interface %q: %w", dst, n, ErrNotFound)
		}
	}
	if !gw.IsValid() && oif == 0 {
		return fmt.Errorf("route %s: needs a gateway or an interface: %w", dst, ErrInvalidArgument)
	}
	return nl.addRoute(dst.Masked(), gw, oif)
}
