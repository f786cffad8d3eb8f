package vswitch

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeLink records the frames the router writes to a VM.
type fakeLink struct {
	mu     sync.Mutex
	frames [][]byte
	closed bool
}

func (l *fakeLink) ReadFrame([]byte) (int, error) { select {} }
func (l *fakeLink) WriteFrame(f []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return net.ErrClosed
	}
	l.frames = append(l.frames, append([]byte(nil), f...))
	return nil
}
func (l *fakeLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// take returns and forgets the frames written so far.
func (l *fakeLink) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.frames
	l.frames = nil
	return f
}

var testLog = slog.New(slog.DiscardHandler)

var (
	testSubnet = netip.MustParsePrefix("10.213.0.0/24")
	testGW     = netip.MustParseAddr("10.213.0.1")
	gwHW       = net.HardwareAddr{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd}
	podSideHW  = net.HardwareAddr{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xde}
	outside    = netip.MustParseAddr("10.201.0.9")
)

type testRouter struct {
	*Router
	gw    [][]byte
	links map[string]*fakeLink
}

func newTestRouter(t *testing.T) *testRouter {
	t.Helper()
	tr := &testRouter{links: map[string]*fakeLink{}}
	r, err := NewRouter(RouterConfig{Subnet: testSubnet, Gateway: testGW, GatewayMAC: gwHW, PodSideMAC: podSideHW}, func(f []byte) {
		tr.gw = append(tr.gw, append([]byte(nil), f...))
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.Router = r
	return tr
}

// add registers and plugs a VM (plugging directly: Serve would need a
// readable link).
func (tr *testRouter) add(t *testing.T, ep Endpoint) *fakeLink {
	t.Helper()
	if err := tr.SetEndpoint(ep); err != nil {
		t.Fatal(err)
	}
	l := &fakeLink{}
	tr.mu.Lock()
	tr.eps[ep.ID].link = l
	tr.mu.Unlock()
	tr.links[ep.ID] = l
	return l
}

// send makes VM id send frame f.
func (tr *testRouter) send(id string, f []byte) {
	tr.mu.RLock()
	e := tr.eps[id]
	tr.mu.RUnlock()
	tr.fromVM(e, f)
}

func hw(s string) mac {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return mac(m)
}

// ipFrame builds an Ethernet frame with an IPv4 packet carrying a TCP
// segment (flags) or a UDP datagram.
func ipFrame(dst, src mac, sip, dip netip.Addr, proto uint8, sport, dport uint16, flags byte) []byte {
	l4len := 20
	if proto == ipProtoUDP {
		l4len = 8
	}
	f := make([]byte, ethHeaderLen+20+l4len)
	setEth(f, dst, src)
	binary.BigEndian.PutUint16(f[12:14], etherTypeIP4)
	ip := f[ethHeaderLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+l4len))
	ip[8] = 64
	ip[9] = proto
	s, d := sip.As4(), dip.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:2], sport)
	binary.BigEndian.PutUint16(l4[2:4], dport)
	if proto == ipProtoTCP {
		l4[12] = 5 << 4
		l4[13] = flags
	}
	return f
}

func arpRequestFrame(src mac, sip, tip netip.Addr) []byte {
	f := arpReplyFrame(src, sip, broadcastMAC, tip) // same layout; fix the fields
	a := arpPacket(f[ethHeaderLen:])
	a.setOp(arpRequest)
	a.setTargetMAC(mac{})
	a.setIPs(sip, tip)
	return f
}

func dstOf(f []byte) netip.Addr { p, _ := parseIPv4(f); return p.dst }

var (
	macA  = hw("02:00:00:00:00:0a")
	macB1 = hw("02:00:00:00:00:b1")
	macB2 = hw("02:00:00:00:00:b2")
	ipA   = netip.MustParseAddr("10.213.0.10")
	ipB   = netip.MustParseAddr("10.213.0.20")
)

func TestARPIsAnsweredWithTheGatewayMAC(t *testing.T) {
	tr := newTestRouter(t)
	la := tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	tr.add(t, Endpoint{ID: "b", MAC: macB1.String(), IP: ipB, Pod: "pb"})

	for _, target := range []netip.Addr{testGW, ipB, netip.MustParseAddr("10.213.0.77")} {
		tr.send("a", arpRequestFrame(macA, ipA, target))
		got := la.take()
		if len(got) != 1 {
			t.Fatalf("ARP for %v: %d answers, want 1", target, len(got))
		}
		a, ok := parseARP(got[0])
		if !ok || a.op() != arpReply || a.senderMAC() != mac(gwHW) || a.senderIP() != target || a.targetIP() != ipA || ethDst(got[0]) != macA {
			t.Errorf("ARP for %v: answer %x", target, got[0])
		}
	}
	// A duplicate-address probe for its own address gets no answer.
	tr.send("a", arpRequestFrame(macA, netip.IPv4Unspecified(), ipA))
	// A request claiming another VM's address is refused.
	tr.send("a", arpRequestFrame(macA, ipB, testGW))
	if got := la.take(); len(got) != 0 {
		t.Errorf("answers to a probe and a spoofed request: %d", len(got))
	}
	if c := tr.Counters(); c.Spoofed != 1 {
		t.Errorf("spoofed = %d, want 1", c.Spoofed)
	}
}

func TestSpoofedFramesGoNowhere(t *testing.T) {
	tr := newTestRouter(t)
	tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	lb := tr.add(t, Endpoint{ID: "b", MAC: macB1.String(), IP: ipB, Pod: "pb"})
	victim := netip.MustParseAddr("10.213.0.30")
	lv := tr.add(t, Endpoint{ID: "v", MAC: hw("02:00:00:00:00:0c").String(), IP: victim, Pod: "pv"})

	// Another VM's MAC, another VM's address, and both.
	tr.send("a", ipFrame(mac(gwHW), macB1, ipA, victim, ipProtoTCP, 1000, 80, tcpFlagSYN))
	tr.send("a", ipFrame(mac(gwHW), macA, ipB, victim, ipProtoTCP, 1000, 80, tcpFlagSYN))
	tr.send("a", ipFrame(mac(gwHW), macA, ipB, outside, ipProtoTCP, 1000, 80, tcpFlagSYN))
	if n := len(lb.take()) + len(lv.take()) + len(tr.gw); n != 0 {
		t.Fatalf("%d spoofed frames were forwarded", n)
	}
	if c := tr.Counters(); c.Spoofed != 3 {
		t.Errorf("spoofed = %d, want 3", c.Spoofed)
	}
	// The honest frame passes.
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, victim, ipProtoTCP, 1000, 80, tcpFlagSYN))
	got := lv.take()
	if len(got) != 1 || ethDst(got[0]) != hw("02:00:00:00:00:0c") || ethSrc(got[0]) != mac(gwHW) {
		t.Fatalf("pod-to-pod frame: %x", got)
	}
}

func TestTrafficBeyondThePodsGoesToTheGateway(t *testing.T) {
	tr := newTestRouter(t)
	tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, outside, ipProtoTCP, 40000, 443, tcpFlagSYN))
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, testGW, ipProtoUDP, 40000, 53, 0))
	// An unused pod address, the broadcast, IPv6: dropped.
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, netip.MustParseAddr("10.213.0.99"), ipProtoTCP, 40000, 80, tcpFlagSYN))
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, netip.MustParseAddr("255.255.255.255"), ipProtoUDP, 68, 67, 0))
	v6 := ipFrame(mac(gwHW), macA, ipA, outside, ipProtoTCP, 1, 2, 0)
	binary.BigEndian.PutUint16(v6[12:14], 0x86dd)
	tr.send("a", v6)
	if len(tr.gw) != 2 || dstOf(tr.gw[0]) != outside || dstOf(tr.gw[1]) != testGW {
		t.Fatalf("gateway got %d frames, want the two for %v and %v", len(tr.gw), outside, testGW)
	}
	if c := tr.Counters(); c.NoRoute != 3 {
		t.Errorf("noRoute = %d, want 3", c.NoRoute)
	}
}

func TestGatewayStackLearnsPodsAtThePodSideMAC(t *testing.T) {
	tr := newTestRouter(t)
	la := tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	tr.FromGateway(arpRequestFrame(mac(gwHW), testGW, ipA))
	tr.FromGateway(arpRequestFrame(mac(gwHW), testGW, netip.MustParseAddr("10.213.0.99")))
	if len(tr.gw) != 1 {
		t.Fatalf("gateway got %d ARP answers, want 1", len(tr.gw))
	}
	a, _ := parseARP(tr.gw[0])
	if a.senderMAC() != mac(podSideHW) || a.senderIP() != ipA {
		t.Errorf("answer %x", tr.gw[0])
	}
	tr.FromGateway(ipFrame(mac(podSideHW), mac(gwHW), netip.MustParseAddr("10.96.0.10"), ipA, ipProtoUDP, 53, 40000, 0))
	got := la.take()
	if len(got) != 1 || ethDst(got[0]) != macA || ethSrc(got[0]) != mac(gwHW) {
		t.Fatalf("packet from the gateway: %x", got)
	}
}

// A pod of two VMs: b1 (slot 0) declares 8080, b2 (slot 1) declares 80.
func twoVMPod(t *testing.T, tr *testRouter) (b1, b2 *fakeLink) {
	b1 = tr.add(t, Endpoint{ID: "b1", MAC: macB1.String(), IP: ipB, Pod: "pb", Slot: 0, Slots: 2, Ports: []Port{{"TCP", 8080}}})
	b2 = tr.add(t, Endpoint{ID: "b2", MAC: macB2.String(), IP: ipB, Pod: "pb", Slot: 1, Slots: 2, Ports: []Port{{"TCP", 80}, {"UDP", 5353}}})
	return b1, b2
}

func TestSharedAddressInboundGoesToTheServingVM(t *testing.T) {
	tr := newTestRouter(t)
	tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	b1, b2 := twoVMPod(t, tr)
	cases := []struct {
		name  string
		frame []byte
		want  *fakeLink
	}{
		{"SYN to 80", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50000, 80, tcpFlagSYN), b2},
		{"ACK of that flow", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50000, 80, tcpFlagACK), b2},
		{"SYN to 8080", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50001, 8080, tcpFlagSYN), b1},
		{"UDP to 5353", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoUDP, 50002, 5353, 0), b2},
		{"SYN to a port nobody serves", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50003, 9999, tcpFlagSYN), b1},
		{"stray ACK to b2's ephemeral range", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 443, 47000, tcpFlagACK), b2},
		{"stray ACK to b1's ephemeral range", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 443, 33000, tcpFlagACK), b1},
	}
	for _, c := range cases {
		tr.send("a", c.frame)
		g1, g2 := b1.take(), b2.take()
		got := b1
		if len(g2) == 1 && len(g1) == 0 {
			got = b2
		} else if !(len(g1) == 1 && len(g2) == 0) {
			t.Errorf("%s: b1 got %d, b2 got %d frames", c.name, len(g1), len(g2))
			continue
		}
		if got != c.want {
			t.Errorf("%s: went to the wrong VM", c.name)
		}
	}
	// A port found listening (not declared) is served too.
	if err := tr.SetListeners("b2", []Port{{"TCP", 5000}}); err != nil {
		t.Fatal(err)
	}
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50004, 5000, tcpFlagSYN))
	if len(b2.take()) != 1 {
		t.Error("SYN to a reported listener did not reach b2")
	}
}

func TestSharedAddressRepliesGoToTheVMThatOpened(t *testing.T) {
	tr := newTestRouter(t)
	b1, b2 := twoVMPod(t, tr)
	// b2 opens a flow from port 8080 — a port b1 declares — to the outside:
	// the reply is b2's, whatever the port says.
	tr.send("b2", ipFrame(mac(gwHW), macB2, ipB, outside, ipProtoTCP, 8080, 443, tcpFlagSYN))
	if len(tr.gw) != 1 {
		t.Fatal("b2's SYN did not reach the gateway")
	}
	tr.FromGateway(ipFrame(mac(podSideHW), mac(gwHW), outside, ipB, ipProtoTCP, 443, 8080, tcpFlagSYN|tcpFlagACK))
	if len(b2.take()) != 1 || len(b1.take()) != 0 {
		t.Fatal("the SYN-ACK did not go back to b2")
	}
	// A UDP exchange between the pod's two VMs through another pod is the
	// same: the source is remembered per peer.
	tr.send("b1", ipFrame(mac(gwHW), macB1, ipB, outside, ipProtoUDP, 33000, 53, 0))
	tr.FromGateway(ipFrame(mac(podSideHW), mac(gwHW), outside, ipB, ipProtoUDP, 53, 33000, 0))
	if len(b1.take()) != 1 {
		t.Fatal("the UDP answer did not go back to b1")
	}
}

func TestUnpluggedVMGetsNothingAndPrimaryMoves(t *testing.T) {
	tr := newTestRouter(t)
	tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	b1, b2 := twoVMPod(t, tr)
	tr.mu.Lock()
	tr.eps["b1"].link = nil // b1's VM is gone (an init container done, say)
	tr.mu.Unlock()
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50000, 9999, tcpFlagSYN))
	if len(b1.take()) != 0 || len(b2.take()) != 1 {
		t.Error("with b1 unplugged, b2 must be the primary")
	}
	tr.RemoveEndpoint("b2")
	tr.send("a", ipFrame(mac(gwHW), macA, ipA, ipB, ipProtoTCP, 50001, 80, tcpFlagSYN))
	if c := tr.Counters(); c.NoRoute != 1 {
		t.Errorf("noRoute = %d, want 1 (no plugged VM left)", c.NoRoute)
	}
	if !b2.closed {
		t.Error("RemoveEndpoint left the link open")
	}
}

func TestSetEndpointRefusesBadEndpoints(t *testing.T) {
	tr := newTestRouter(t)
	tr.add(t, Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"})
	bad := []Endpoint{
		{ID: "x", MAC: "zz", IP: ipB, Pod: "p"},
		{ID: "x", MAC: "03:00:00:00:00:01", IP: ipB, Pod: "p"}, // multicast
		{ID: "x", MAC: "02:00:00:00:00:01", IP: outside, Pod: "p"},
		{ID: "x", MAC: "02:00:00:00:00:01", IP: testGW, Pod: "p"},
		{ID: "x", MAC: "02:00:00:00:00:01", IP: ipA, Pod: "other"}, // pa's address
		{ID: "x", MAC: macA.String(), IP: ipB, Pod: "p"},           // a's MAC
		{ID: "x", MAC: "02:00:00:00:00:01", IP: ipB, Pod: "p", Ports: []Port{{"SCTP", 1}}},
		{ID: "x", MAC: "02:00:00:00:00:01", IP: ipB},
	}
	for _, ep := range bad {
		if err := tr.SetEndpoint(ep); err == nil {
			t.Errorf("SetEndpoint(%+v) succeeded", ep)
		}
	}
}

func TestEphemeralRangesSplitLinuxsRange(t *testing.T) {
	if f, l := EphemeralRange(0, 1); f != 32768 || l != 60999 {
		t.Errorf("one VM: %d-%d", f, l)
	}
	prev := uint16(32767)
	for i := range 3 {
		f, l := EphemeralRange(i, 3)
		if f != prev+1 || l < f {
			t.Errorf("slot %d of 3: %d-%d after %d", i, f, l, prev)
		}
		prev = l
	}
	if prev > 60999 {
		t.Errorf("last slot ends at %d", prev)
	}
}

func TestConntrackForgetsIdleFlows(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newConntrack(func() time.Time { return now })
	k := flowKey{proto: ipProtoUDP, pod: ipB, podPort: 1, peer: outside, peerPort: 2}
	c.put(k, "b1", ipProtoUDP)
	if id, ok := c.get(k); !ok || id != "b1" {
		t.Fatal("fresh flow not found")
	}
	now = now.Add(udpFlowIdle + time.Second)
	if _, ok := c.get(k); ok {
		t.Fatal("idle flow still found")
	}
	c.put(flowKey{proto: ipProtoTCP}, "x", ipProtoTCP) // triggers a sweep
	if c.len() != 1 {
		t.Errorf("%d flows after the sweep, want 1", c.len())
	}
}

func TestServeReplacesAnEarlierLink(t *testing.T) {
	tr := newTestRouter(t)
	if err := tr.SetEndpoint(Endpoint{ID: "a", MAC: macA.String(), IP: ipA, Pod: "pa"}); err != nil {
		t.Fatal(err)
	}
	first, second := newPipeLink(), newPipeLink()
	done := make(chan error, 2)
	go func() { done <- tr.Serve(t.Context(), "a", first, nil) }()
	waitFor(t, func() bool { return tr.Plugged("a") })
	go func() { done <- tr.Serve(t.Context(), "a", second, nil) }()
	if err := <-done; err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the replaced link's Serve returned %v", err)
	}
	if !tr.Plugged("a") {
		t.Fatal("the new link is not plugged")
	}
	second.Close()
	<-done
	if tr.Plugged("a") {
		t.Fatal("a closed link is still plugged")
	}
	if err := tr.Serve(t.Context(), "nobody", newPipeLink(), nil); !errors.Is(err, ErrUnknownEndpoint) {
		t.Errorf("Serve of an unknown VM: %v", err)
	}
}

// pipeLink is a Link whose reads block until Close.
type pipeLink struct {
	once   sync.Once
	closed chan struct{}
}

func newPipeLink() *pipeLink { return &pipeLink{closed: make(chan struct{})} }
func (l *pipeLink) ReadFrame([]byte) (int, error) {
	<-l.closed
	return 0, net.ErrClosed
}
func (l *pipeLink) WriteFrame([]byte) error { return nil }
func (l *pipeLink) Close() error            { l.once.Do(func() { close(l.closed) }); return nil }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
