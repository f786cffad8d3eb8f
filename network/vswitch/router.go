package vswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Link is one VM's cable into the switch: one Ethernet frame per datagram
// (QEMU's dgram netdev and vz's file-handle attachment both speak this).
type Link interface {
	ReadFrame(b []byte) (int, error)
	// WriteFrame sends one frame without waiting for room: a VM that does
	// not keep up loses frames, as on a congested switch port, and never
	// stalls the sender.
	WriteFrame(f []byte) error
	Close() error
}

// Port is one protocol/port pair a container serves.
type Port struct {
	Protocol string `json:"protocol"` // "TCP" or "UDP"
	Port     uint16 `json:"port"`
}

func (p Port) key() (portKey, error) {
	switch strings.ToUpper(p.Protocol) {
	case "TCP", "":
		return portKey{ipProtoTCP, p.Port}, nil
	case "UDP":
		return portKey{ipProtoUDP, p.Port}, nil
	}
	return portKey{}, fmt.Errorf("port %d: protocol %q: want TCP or UDP", p.Port, p.Protocol)
}

type portKey struct {
	proto uint8
	port  uint16
}

// Endpoint is what the router knows of one VM. The VMs of a pod share its
// address: the router sends each inbound flow to the VM that serves its
// port, and replies to the VM that opened the flow.
type Endpoint struct {
	ID  string `json:"id"`
	MAC string `json:"mac"`
	// IP is the pod's address.
	IP netip.Addr `json:"ip"`
	// Pod groups the VMs sharing IP.
	Pod string `json:"pod"`
	// Slot numbers the VM among its pod's Slots VMs; it selects the VM's
	// share of the ephemeral port range (EphemeralRange). The plugged VM
	// with the lowest slot is the pod's primary: it gets what no port
	// names (ping, unknown ports).
	Slot  int `json:"slot"`
	Slots int `json:"slots"`
	// Ports are the ports the container declares (containerPorts).
	Ports []Port `json:"ports,omitempty"`
}

// Linux's default net.ipv4.ip_local_port_range.
const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
)

// EphemeralRange is the local port range of the VM in slot of slots: the
// VMs of one pod split Linux's default range so their outbound flows never
// use the same local port, and a reply finds its VM by port alone.
func EphemeralRange(slot, slots int) (first, last uint16) {
	if slots <= 1 || slot < 0 || slot >= slots {
		return ephemeralFirst, ephemeralLast
	}
	size := (ephemeralLast - ephemeralFirst + 1) / slots
	first = uint16(ephemeralFirst + slot*size)
	return first, first + uint16(size) - 1
}

// RouterConfig describes the network the router serves.
type RouterConfig struct {
	// Subnet holds the pods' addresses; Gateway is the router's own
	// address in it, the pods' default route.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// GatewayMAC is the hardware address the VMs reach the gateway (and
	// everything beyond their own VM) at.
	GatewayMAC net.HardwareAddr
	// PodSideMAC is what the router answers the gateway's own stack when it
	// asks for a pod's address: the router then picks the VM per flow.
	PodSideMAC net.HardwareAddr
}

// Counters are the router's drop and forward counts since start.
type Counters struct {
	Forwarded   uint64 `json:"forwarded"`
	ToGateway   uint64 `json:"toGateway"`
	Spoofed     uint64 `json:"spoofed"`
	NoRoute     uint64 `json:"noRoute"`
	Malformed   uint64 `json:"malformed"`
	LinkDropped uint64 `json:"linkDropped"`
}

// Router joins the VMs of one node: it answers their ARP, refuses frames
// whose source MAC or IP is not the sending VM's own, routes between pods on
// the node, and hands everything else to the gateway (a user-space TCP/IP
// stack: DNS, Services, the way out).
type Router struct {
	gw         netip.Addr
	subnet     netip.Prefix
	gwMAC      mac
	podSideMAC mac
	toGateway  func(frame []byte)
	ct         *conntrack

	mu    sync.RWMutex
	eps   map[string]*endpoint
	byMAC map[mac]*endpoint
	pods  map[netip.Addr]*pod

	forwarded, toGW, spoofed, noRoute, malformed, linkDropped atomic.Uint64
}

type endpoint struct {
	Endpoint
	mac      mac
	first    uint16 // ephemeral range
	last     uint16
	declared map[portKey]bool
	reported map[portKey]bool
	link     Link // nil while the VM is not plugged in
}

type pod struct {
	ip  netip.Addr
	vms []*endpoint // by slot
}

// NewRouter returns a router that hands frames for the gateway to
// toGateway (called without the router's locks held; the frame is valid
// only during the call).
func NewRouter(cfg RouterConfig, toGateway func(frame []byte)) (*Router, error) {
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Contains(cfg.Gateway) {
		return nil, fmt.Errorf("router: gateway %v is not in subnet %v", cfg.Gateway, cfg.Subnet)
	}
	if len(cfg.GatewayMAC) != 6 || len(cfg.PodSideMAC) != 6 {
		return nil, errors.New("router: gateway and pod-side MACs must be Ethernet addresses")
	}
	return &Router{
		gw: cfg.Gateway, subnet: cfg.Subnet,
		gwMAC: mac(cfg.GatewayMAC), podSideMAC: mac(cfg.PodSideMAC),
		toGateway: toGateway,
		ct:        newConntrack(time.Now),
		eps:       map[string]*endpoint{},
		byMAC:     map[mac]*endpoint{},
		pods:      map[netip.Addr]*pod{},
	}, nil
}

// SetEndpoint adds or replaces a VM's endpoint; a plugged link stays.
func (r *Router) SetEndpoint(ep Endpoint) error {
	hw, err := net.ParseMAC(ep.MAC)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
		return fmt.Errorf("endpoint %s: MAC %q: want a unicast Ethernet address", ep.ID, ep.MAC)
	}
	if !ep.IP.Is4() || !r.subnet.Contains(ep.IP) || ep.IP == r.gw {
		return fmt.Errorf("endpoint %s: address %v is not a host address of %v", ep.ID, ep.IP, r.subnet)
	}
	if ep.Pod == "" {
		return fmt.Errorf("endpoint %s: no pod", ep.ID)
	}
	declared := map[portKey]bool{}
	for _, p := range ep.Ports {
		k, err := p.key()
		if err != nil {
			return fmt.Errorf("endpoint %s: %w", ep.ID, err)
		}
		declared[k] = true
	}
	e := &endpoint{Endpoint: ep, mac: mac(hw), declared: declared, reported: map[portKey]bool{}}
	e.first, e.last = EphemeralRange(ep.Slot, ep.Slots)

	r.mu.Lock()
	defer r.mu.Unlock()
	if other := r.byMAC[e.mac]; other != nil && other.ID != ep.ID {
		return fmt.Errorf("endpoint %s: MAC %s is endpoint %s's", ep.ID, ep.MAC, other.ID)
	}
	if p := r.pods[ep.IP]; p != nil && len(p.vms) > 0 && p.vms[0].Pod != ep.Pod && p.vms[0].ID != ep.ID {
		return fmt.Errorf("endpoint %s: address %v belongs to pod %s", ep.ID, ep.IP, p.vms[0].Pod)
	}
	if old := r.eps[ep.ID]; old != nil {
		e.link, e.reported = old.link, old.reported
		r.removeLocked(old)
	}
	r.eps[ep.ID] = e
	r.byMAC[e.mac] = e
	p := r.pods[ep.IP]
	if p == nil {
		p = &pod{ip: ep.IP}
		r.pods[ep.IP] = p
	}
	p.vms = append(p.vms, e)
	slices.SortStableFunc(p.vms, func(a, b *endpoint) int { return a.Slot - b.Slot })
	return nil
}

// RemoveEndpoint forgets a VM and closes its link.
func (r *Router) RemoveEndpoint(id string) {
	r.mu.Lock()
	e := r.eps[id]
	if e != nil {
		r.removeLocked(e)
	}
	r.mu.Unlock()
	if e != nil && e.link != nil {
		e.link.Close()
	}
}

func (r *Router) removeLocked(e *endpoint) {
	delete(r.eps, e.ID)
	if r.byMAC[e.mac] == e {
		delete(r.byMAC, e.mac)
	}
	if p := r.pods[e.IP]; p != nil {
		p.vms = slices.DeleteFunc(p.vms, func(x *endpoint) bool { return x == e })
		if len(p.vms) == 0 {
			delete(r.pods, e.IP)
		}
	}
}

// Endpoints returns every endpoint, sorted by id.
func (r *Router) Endpoints() []Endpoint {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Endpoint, 0, len(r.eps))
	for _, e := range r.eps {
		out = append(out, e.Endpoint)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Plugged reports whether VM id has a link.
func (r *Router) Plugged(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.eps[id]
	return e != nil && e.link != nil
}

// SetListeners replaces the ports a VM was found listening on.
func (r *Router) SetListeners(id string, ports []Port) error {
	reported := map[portKey]bool{}
	for _, p := range ports {
		k, err := p.key()
		if err != nil {
			return fmt.Errorf("listeners of %s: %w", id, err)
		}
		reported[k] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.eps[id]
	if e == nil {
		return fmt.Errorf("listeners of %s: %w", id, ErrUnknownEndpoint)
	}
	e.reported = reported
	return nil
}

// ErrUnknownEndpoint is returned for a VM id the router does not know.
var ErrUnknownEndpoint = errors.New("unknown endpoint")

// Serve plugs link in for VM id and forwards the frames the VM sends until
// link fails or ctx ends; a later Serve for the same VM (a reconnect)
// replaces this one. plugged, if set, is called once the link carries
// traffic both ways, before the first read.
func (r *Router) Serve(ctx context.Context, id string, link Link, plugged func()) error {
	r.mu.Lock()
	e := r.eps[id]
	if e == nil {
		r.mu.Unlock()
		link.Close()
		return fmt.Errorf("plug %s: %w", id, ErrUnknownEndpoint)
	}
	old := e.link
	e.link = link
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	stop := context.AfterFunc(ctx, func() { link.Close() })
	defer stop()
	defer func() {
		r.mu.Lock()
		if e.link == link {
			e.link = nil
		}
		r.mu.Unlock()
		link.Close()
	}()
	if plugged != nil {
		plugged()
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := link.ReadFrame(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read frames of %s: %w", id, err)
		}
		r.fromVM(e, buf[:n])
	}
}

// Counters returns the router's counts.
func (r *Router) Counters() Counters {
	return Counters{
		Forwarded: r.forwarded.Load(), ToGateway: r.toGW.Load(), Spoofed: r.spoofed.Load(),
		NoRoute: r.noRoute.Load(), Malformed: r.malformed.Load(), LinkDropped: r.linkDropped.Load(),
	}
}

// fromVM handles one frame sent by src.
func (r *Router) fromVM(src *endpoint, f []byte) {
	if len(f) < ethHeaderLen {
		r.malformed.Add(1)
		return
	}
	if ethSrc(f) != src.mac {
		r.spoofed.Add(1)
		return
	}
	switch ethType(f) {
	case etherTypeARP:
		r.arpFromVM(src, f)
	case etherTypeIP4:
		r.ipFromVM(src, f)
	default: // IPv6 and the rest: the pod network is IPv4 only
		r.noRoute.Add(1)
	}
}

// arpFromVM answers every request of a VM for another address with the
// gateway's MAC (proxy ARP): whatever a VM reaches goes through the router,
// which is what lets pods share an address and keeps VMs from talking past
// the checks.
func (r *Router) arpFromVM(src *endpoint, f []byte) {
	a, ok := parseARP(f)
	if !ok {
		r.malformed.Add(1)
		return
	}
	sip := a.senderIP()
	if a.senderMAC() != src.mac || (sip != src.IP && !sip.IsUnspecified()) {
		r.spoofed.Add(1)
		return
	}
	tip := a.targetIP()
	// Announcements and duplicate-address probes get no answer: no one
	// else may hold a VM's address.
	if a.op() != arpRequest || sip != src.IP || tip == src.IP {
		return
	}
	r.write(src.link, arpReplyFrame(r.gwMAC, tip, src.mac, src.IP))
}

func (r *Router) ipFromVM(src *endpoint, f []byte) {
	p, ok := parseIPv4(f)
	if !ok {
		r.malformed.Add(1)
		return
	}
	if p.src != src.IP {
		r.spoofed.Add(1)
		return
	}
	r.noteOutbound(src, p)
	r.mu.RLock()
	dst := r.pods[p.dst]
	r.mu.RUnlock()
	switch {
	case dst != nil:
		r.toPod(dst, f, p)
	case p.dst == r.gw || !r.subnet.Contains(p.dst) && !p.dst.IsMulticast() && p.dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		r.toGW.Add(1)
		r.toGateway(f)
	default: // an unused pod address, the subnet's broadcast, multicast
		r.noRoute.Add(1)
	}
}

// FromGateway takes a frame the gateway's stack sends: ARP for a pod's
// address, or a packet for a pod.
func (r *Router) FromGateway(f []byte) {
	if len(f) < ethHeaderLen {
		return
	}
	switch ethType(f) {
	case etherTypeARP:
		a, ok := parseARP(f)
		if !ok || a.op() != arpRequest {
			return
		}
		r.mu.RLock()
		_, known := r.pods[a.targetIP()]
		r.mu.RUnlock()
		if known {
			r.toGateway(arpReplyFrame(r.podSideMAC, a.targetIP(), a.senderMAC(), a.senderIP()))
		}
	case etherTypeIP4:
		p, ok := parseIPv4(f)
		if !ok {
			return
		}
		r.mu.RLock()
		dst := r.pods[p.dst]
		r.mu.RUnlock()
		if dst == nil {
			r.noRoute.Add(1)
			return
		}
		r.toPod(dst, f, p)
	}
}

// toPod delivers a packet to the VM of dst that owns its flow.
func (r *Router) toPod(dst *pod, f []byte, p ipv4Packet) {
	r.mu.RLock()
	e := r.pick(dst, p)
	var link Link
	var hw mac
	if e != nil {
		link, hw = e.link, e.mac
	}
	r.mu.RUnlock()
	if link == nil {
		r.noRoute.Add(1)
		return
	}
	setEth(f, hw, r.gwMAC)
	r.forwarded.Add(1)
	r.write(link, f)
}

func (r *Router) write(l Link, f []byte) {
	if l == nil {
		return
	}
	if err := l.WriteFrame(f); err != nil {
		r.linkDropped.Add(1)
	}
}
