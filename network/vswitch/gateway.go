package vswitch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Well-known ports of the gateway itself.
const (
	// DNSPort serves cluster DNS on the gateway address.
	DNSPort = 53
	// RelayPort joins a pod's containers over localhost: a guest agent
	// listening on a port a sibling container serves connects here, sends
	// the port (2 bytes, big-endian) and is spliced to the pod's address
	// at that port, which the router delivers to the sibling's VM.
	RelayPort = 1
)

// GatewayConfig is what the gateway decides with.
type GatewayConfig struct {
	// MTU of the pod network.
	MTU int
	// Upstreams are the host's resolvers (host:port) for names outside
	// the cluster.
	Upstreams []string
	// AllowHostLoopback forwards connections to the gateway's address
	// (other than its own services) to the host's 127.0.0.1; off, services
	// that listen only on the host's loopback stay out of the pods' reach.
	AllowHostLoopback bool
	// Dial dials out from the host (nil: net.Dialer); tests replace it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Gateway is the pod network's own TCP/IP stack (gVisor's netstack through
// gvisor-tap-vsock's link endpoint): the pods' default route. It serves DNS,
// forwards connections to Service addresses to an endpoint, and dials
// everything else out from the host (outbound NAT).
type Gateway struct {
	cfg      GatewayConfig
	ip       netip.Addr
	subnet   netip.Prefix
	stack    *stack.Stack
	link     *tap.LinkEndpoint
	router   *Router
	services atomic.Pointer[serviceIndex]
	log      *slog.Logger

	dnsServers []*dns.Server
	listeners  []io.Closer
	wg         sync.WaitGroup

	tcpOut, tcpRefused, udpFlows atomic.Uint64
}

// egress adapts the router to the link endpoint's switch side.
type egress struct{ r *Router }

func (e egress) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	e.r.FromGateway(v.AsSlice())
}

// NewGateway builds the gateway of router's network. Start serves it.
func newGateway(cfg GatewayConfig, rcfg RouterConfig, log *slog.Logger) (*Gateway, *Router, error) {
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	g := &Gateway{cfg: cfg, ip: rcfg.Gateway, subnet: rcfg.Subnet, log: log}
	r, err := NewRouter(rcfg, g.deliver)
	if err != nil {
		return nil, nil, err
	}
	g.router = r
	g.link, err = tap.NewLinkEndpoint(false, uint32(cfg.MTU), rcfg.GatewayMAC.String(), rcfg.Gateway.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway link: %w", err)
	}
	g.link.Connect(egress{r})
	g.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	// TCP that keeps a fast guest busy: SACK, and buffers that grow to a
	// few MiB (gVisor's defaults stop at 1 MiB receive, 4 MiB send).
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &rcv, &snd} {
		if err := g.stack.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return nil, nil, fmt.Errorf("gateway TCP option %T: %s", opt, err)
		}
	}
	if err := g.stack.CreateNIC(1, g.link); err != nil {
		return nil, nil, fmt.Errorf("gateway NIC: %s", err)
	}
	if err := g.stack.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(rcfg.Gateway.As4()).WithPrefix(),
	}, stack.AddressProperties{}); err != nil {
		return nil, nil, fmt.Errorf("gateway address: %s", err)
	}
	// Promiscuous and spoofing: the stack accepts connections to any
	// address (a Service's, a host's on the internet) and answers from it.
	g.stack.SetPromiscuousMode(1, true)
	g.stack.SetSpoofing(1, true)
	sub, err := tcpip.NewSubnet(tcpip.AddrFrom4(rcfg.Subnet.Masked().Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(rcfg.Subnet.Bits(), 32)))
	if err != nil {
		return nil, nil, fmt.Errorf("gateway route: %w", err)
	}
	g.stack.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: 1}})
	return g, r, nil
}

// deliver hands a frame from the router to the stack.
func (g *Gateway) deliver(f []byte) {
	data := buffer.MakeWithData(f) // copies: the router reuses f
	data.TrimFront(ethHeaderLen)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: data})
	defer pkt.DecRef()
	g.link.DeliverNetworkPacket(tcpip.NetworkProtocolNumber(ethType(f)), pkt)
}

// SetServices replaces the Service table.
func (g *Gateway) SetServices(t ServiceTable) error {
	if err := t.Validate(); err != nil {
		return err
	}
	g.services.Store(newServiceIndex(t))
	return nil
}

// start serves DNS and the relay on the gateway address and installs the
// forwarders.
func (g *Gateway) start() error {
	gwAddr := func(port uint16) tcpip.FullAddress {
		return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.ip.As4()), Port: port}
	}
	handler := newClusterDNS(&g.services, g.cfg.Upstreams, g.log)
	udpConn, err := gonet.DialUDP(g.stack, ptr(gwAddr(DNSPort)), nil, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("listen for DNS over UDP: %w", err)
	}
	tcpLn, err := gonet.ListenTCP(g.stack, gwAddr(DNSPort), ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("listen for DNS over TCP: %w", err)
	}
	g.dnsServers = []*dns.Server{
		{PacketConn: udpConn, Handler: handler},
		{Listener: tcpLn, Handler: handler},
	}
	for _, s := range g.dnsServers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := s.ActivateAndServe(); err != nil {
				g.log.Debug("DNS server ended", "err", err)
			}
		}()
	}
	relay, err := gonet.ListenTCP(g.stack, gwAddr(RelayPort), ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("listen for the pod relay: %w", err)
	}
	g.listeners = append(g.listeners, relay)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.serveRelay(relay)
	}()
	g.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tcp.NewForwarder(g.stack, 0, 256, g.forwardTCP).HandlePacket)
	g.stack.SetTransportProtocolHandler(udp.ProtocolNumber, udp.NewForwarder(g.stack, g.forwardUDP).HandlePacket)
	return nil
}

func ptr[T any](v T) *T { return &v }

// close stops the gateway's servers and the stack.
func (g *Gateway) close() {
	for _, s := range g.dnsServers {
		_ = s.Shutdown()
	}
	for _, l := range g.listeners {
		l.Close()
	}
	g.stack.Close()
	g.wg.Wait()
}

// target says where a pod's connection to dst goes.
type target struct {
	// inside dials the address inside the pod network (a pod of this
	// node); otherwise it is dialled from the host.
	inside bool
	addr   netip.AddrPort
}

// errRefused answers a connection the gateway does not forward.
var errRefused = errors.New("refused by the pod network")

// route decides about a flow from a pod to dst.
func (g *Gateway) route(proto uint8, dst netip.AddrPort) (target, error) {
	ip := dst.Addr()
	if x := g.services.Load(); x.isVIP(ip) {
		be, ok := x.backend(ip, proto, dst.Port())
		if !ok || !be.IsValid() {
			return target{}, fmt.Errorf("%w: service %v has no endpoint", errRefused, dst)
		}
		return target{inside: g.subnet.Contains(be.Addr()), addr: be}, nil
	}
	switch {
	case ip == g.ip:
		if g.cfg.AllowHostLoopback {
			return target{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())}, nil
		}
		return target{}, fmt.Errorf("%w: the host's loopback is not open to pods", errRefused)
	case g.subnet.Contains(ip):
		return target{}, fmt.Errorf("%w: no pod at %v", errRefused, ip)
	case !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return target{}, fmt.Errorf("%w: %v is not routable", errRefused, ip)
	}
	return target{addr: dst}, nil
}

// dialTarget connects to t.
func (g *Gateway) dialTarget(ctx context.Context, network string, t target) (net.Conn, error) {
	if !t.inside {
		return g.cfg.Dial(ctx, network, t.addr.String())
	}
	return g.DialInside(ctx, network, t.addr)
}

// DialInside connects to addr on the pod network from the gateway: the
// router delivers it to the pod's VM that serves the port. The node's
// probes and the hostPort listeners use it.
func (g *Gateway) DialInside(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	fa := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(addr.Addr().As4()), Port: addr.Port()}
	switch network {
	case "tcp", "tcp4":
		return gonet.DialContextTCP(ctx, g.stack, fa, ipv4.ProtocolNumber)
	case "udp", "udp4":
		return gonet.DialUDP(g.stack, nil, &fa, ipv4.ProtocolNumber)
	}
	return nil, fmt.Errorf("dial %s %v: unsupported network", network, addr)
}

// dialTimeout bounds a forwarded connection's dial.
const dialTimeout = 30 * time.Second

func (g *Gateway) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
	t, err := g.route(ipProtoTCP, dst)
	if err != nil {
		g.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	out, err := g.dialTarget(ctx, "tcp", t)
	cancel()
	if err != nil {
		g.tcpRefused.Add(1)
		r.Complete(true) // the pod sees a reset, as from a closed port
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if terr != nil {
		out.Close()
		return
	}
	g.tcpOut.Add(1)
	splice(gonet.NewTCPConn(&wq, ep), out)
}

// udpIdle ends a UDP flow's proxy after that long without datagrams.
const udpIdle = forwarder.UDPConnTrackTimeout

func (g *Gateway) forwardUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
	t, err := g.route(ipProtoUDP, dst)
	if err != nil {
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		return
	}
	g.udpFlows.Add(1)
	p, _ := forwarder.NewUDPProxy(&idleStopping{gonet.NewUDPConn(&wq, ep)}, func() (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		defer cancel()
		return g.dialTarget(ctx, "udp", t)
	})
	go func() {
		p.Run()
		ep.Close()
	}()
}

// idleStopping ends a UDP proxy's read loop after udpIdle without traffic.
type idleStopping struct{ c *gonet.UDPConn }

func (l *idleStopping) ReadFrom(b []byte) (int, net.Addr, error) {
	_ = l.c.SetReadDeadline(time.Now().Add(udpIdle))
	return l.c.ReadFrom(b)
}
func (l *idleStopping) WriteTo(b []byte, a net.Addr) (int, error) { return l.c.WriteTo(b, a) }
func (l *idleStopping) SetReadDeadline(t time.Time) error         { return l.c.SetReadDeadline(t) }
func (l *idleStopping) Close() error                              { return l.c.Close() }

// serveRelay joins a container to the sibling that serves a port.
func (g *Gateway) serveRelay(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var hdr [2]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				c.Close()
				return
			}
			_ = c.SetReadDeadline(time.Time{})
			port := binary.BigEndian.Uint16(hdr[:])
			from, ok := netip.AddrFromSlice(c.RemoteAddr().(*net.TCPAddr).IP.To4())
			if !ok || !g.router.Serves(from, ipProtoTCP, port) {
				c.Close()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
			out, err := g.DialInside(ctx, "tcp", netip.AddrPortFrom(from, port))
			cancel()
			if err != nil {
				c.Close()
				return
			}
			splice(c, out)
		}()
	}
}

// splice copies both ways until both directions are done, passing each
// side's end of stream on as a half-close.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// hostPortKey names one host listener.
func hostPortKey(h HostPort) string {
	return h.Protocol + "/" + net.JoinHostPort(h.HostIP.String(), strconv.Itoa(int(h.HostPort)))
}
