package vswitch

import (
	"net/netip"
	"sync"
	"time"
)

// How one address serves several VMs. A pod's containers each run in their
// own VM but share the pod's address, as containers of a pod share a network
// namespace. Inbound packets for the address go to one VM, chosen in this
// order:
//  1. the VM of a flow already seen (conntrack: flows the pod opened, and
//     inbound flows already placed);
//  2. for a packet that opens a flow (TCP SYN, UDP, echo request), the VM
//     that serves the port: declared as a containerPort first, then found
//     listening by the guest agent;
//  3. the VM whose share of the ephemeral range holds the port (a reply to
//     a flow the VM opened while the router was restarting);
//  4. the pod's primary VM (the lowest plugged slot).
//
// Single-VM pods skip all of it.

// pick chooses dst's VM for inbound packet p. Called with r.mu read-locked.
func (r *Router) pick(dst *pod, p ipv4Packet) *endpoint {
	primary := dst.primary()
	if len(dst.vms) == 1 || primary == nil {
		return primary
	}
	peerPort, podPort, opening, ok := p.flowPorts()
	if !ok {
		return primary
	}
	key := flowKey{proto: p.proto, pod: dst.ip, podPort: podPort, peer: p.src, peerPort: peerPort}
	if id, ok := r.ct.get(key); ok {
		if e := dst.byID(id); e != nil && e.link != nil {
			return e
		}
	}
	if p.proto == ipProtoICMP {
		return primary
	}
	pk := portKey{p.proto, podPort}
	if opening {
		if e := dst.serving(pk); e != nil {
			r.ct.put(key, e.ID, p.proto)
			return e
		}
	}
	for _, e := range dst.vms {
		if e.link != nil && podPort >= e.first && podPort <= e.last && !(e.first == ephemeralFirst && e.last == ephemeralLast) {
			return e
		}
	}
	return primary
}

// noteOutbound remembers which VM of a multi-VM pod sent a flow, so the
// replies find it.
func (r *Router) noteOutbound(src *endpoint, p ipv4Packet) {
	r.mu.RLock()
	pd := r.pods[src.IP]
	multi := pd != nil && len(pd.vms) > 1
	r.mu.RUnlock()
	if !multi {
		return
	}
	podPort, peerPort, _, ok := p.flowPorts()
	if !ok {
		return
	}
	r.ct.put(flowKey{proto: p.proto, pod: src.IP, podPort: podPort, peer: p.dst, peerPort: peerPort}, src.ID, p.proto)
}

func (p *pod) primary() *endpoint {
	for _, e := range p.vms {
		if e.link != nil {
			return e
		}
	}
	return nil
}

func (p *pod) byID(id string) *endpoint {
	for _, e := range p.vms {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// serving is the plugged VM that declares k, else one found listening on it.
func (p *pod) serving(k portKey) *endpoint {
	for _, e := range p.vms {
		if e.link != nil && e.declared[k] {
			return e
		}
	}
	for _, e := range p.vms {
		if e.link != nil && e.reported[k] {
			return e
		}
	}
	return nil
}

// flowKey names a flow from the pod's side.
type flowKey struct {
	proto    uint8
	pod      netip.Addr
	podPort  uint16
	peer     netip.Addr
	peerPort uint16
}

// Idle times after which a flow is forgotten: the kernel's defaults for an
// established TCP flow are days, but a flow idle for an hour that resumes is
// still placed right by the ephemeral ranges; UDP and ICMP as Linux's
// conntrack (nf_conntrack_udp_timeout_stream, icmp_timeout).
const (
	tcpFlowIdle  = time.Hour
	udpFlowIdle  = 120 * time.Second
	icmpFlowIdle = 30 * time.Second
	// maxFlows bounds the table; beyond it new flows rely on the ranges.
	maxFlows = 1 << 16
	// sweepEvery is how often expired flows are dropped.
	sweepEvery = 30 * time.Second
)

type flowEntry struct {
	id      string
	expires time.Time
}

// conntrack maps flows of multi-VM pods to the VM that owns them.
type conntrack struct {
	now       func() time.Time
	mu        sync.Mutex
	flows     map[flowKey]flowEntry
	nextSweep time.Time
}

func newConntrack(now func() time.Time) *conntrack {
	return &conntrack{now: now, flows: map[flowKey]flowEntry{}}
}

func idleFor(proto uint8) time.Duration {
	switch proto {
	case ipProtoTCP:
		return tcpFlowIdle
	case ipProtoUDP:
		return udpFlowIdle
	}
	return icmpFlowIdle
}

func (c *conntrack) put(k flowKey, id string, proto uint8) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.nextSweep) || len(c.flows) >= maxFlows {
		c.sweepLocked(now)
	}
	if _, ok := c.flows[k]; !ok && len(c.flows) >= maxFlows {
		return
	}
	c.flows[k] = flowEntry{id: id, expires: now.Add(idleFor(proto))}
}

func (c *conntrack) get(k flowKey) (string, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.flows[k]
	if !ok || now.After(e.expires) {
		return "", false
	}
	e.expires = now.Add(idleFor(k.proto))
	c.flows[k] = e
	return e.id, true
}

func (c *conntrack) sweepLocked(now time.Time) {
	for k, e := range c.flows {
		if now.After(e.expires) {
			delete(c.flows, k)
		}
	}
	c.nextSweep = now.Add(sweepEvery)
}

func (c *conntrack) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flows)
}

// Serves reports whether a plugged VM of the pod at ip declares or listens
// on proto/port.
func (r *Router) Serves(ip netip.Addr, proto uint8, port uint16) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p := r.pods[ip]
	return p != nil && p.serving(portKey{proto, port}) != nil
}
