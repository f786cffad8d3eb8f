package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer answers the client's messages in memory; serve returns the
// replies to one message sent to dst.
type fakeServer struct {
	mu    sync.Mutex
	sent  []*Message
	dsts  []netip.Addr
	kinds []string // "unconfigured" or "configured"
	serve func(m *Message, dst netip.Addr) []*Message
}

func (s *fakeServer) unconfigured(context.Context, *Config) (transport, error) {
	s.mu.Lock()
	s.kinds = append(s.kinds, "unconfigured")
	s.mu.Unlock()
	return &fakeConn{s: s, dst: broadcastAddr, inbox: make(chan []byte, 16)}, nil
}

func (s *fakeServer) configured(_ context.Context, _ *Config, dst netip.Addr) (transport, error) {
	s.mu.Lock()
	s.kinds = append(s.kinds, "configured")
	s.mu.Unlock()
	return &fakeConn{s: s, dst: dst, inbox: make(chan []byte, 16)}, nil
}

func (s *fakeServer) messages() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message(nil), s.sent...)
}

type fakeConn struct {
	s     *fakeServer
	dst   netip.Addr
	inbox chan []byte
}

func (c *fakeConn) Send(_ context.Context, b []byte) error {
	m, err := Parse(b)
	if err != nil {
		return err
	}
	c.s.mu.Lock()
	c.s.sent = append(c.s.sent, m)
	c.s.dsts = append(c.s.dsts, c.dst)
	c.s.mu.Unlock()
	for _, r := range c.s.serve(m, c.dst) {
		rb, err := r.Marshal()
		if err != nil {
			return err
		}
		c.inbox <- rb
	}
	return nil
}

func (c *fakeConn) Receive(ctx context.Context, deadline time.Time) ([]byte, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case b := <-c.inbox:
		return b, nil
	case <-t.C:
		return nil, os.ErrDeadlineExceeded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *fakeConn) Close() error { return nil }

var (
	testMAC    = net.HardwareAddr{0x02, 0x5a, 0, 0, 0, 7}
	serverA    = netip.MustParseAddr("192.168.64.1")
	offeredA   = netip.MustParseAddr("192.168.64.7")
	leaseOpts  = Options{OptSubnetMask: {255, 255, 255, 0}, OptLeaseTime: secs(120), OptRouter: {192, 168, 64, 1}, OptDNS: {192, 168, 64, 1}}
	testConfig = Config{Interface: "eth0", Index: 2, MAC: testMAC, Hostname: "web-1",
		FirstRetransmit: 5 * time.Millisecond, MaxRetransmit: 20 * time.Millisecond}
)

// reply builds a server reply of type t to m from server.
func reply(m *Message, t MessageType, server, yiaddr netip.Addr) *Message {
	o := Options{OptMessageType: {byte(t)}, OptServerID: server.AsSlice()}
	if t != Nak {
		for k, v := range leaseOpts {
			o[k] = v
		}
	}
	return &Message{Op: opReply, XID: m.XID, HWAddr: m.HWAddr, YourIP: yiaddr, Options: o}
}

// simpleServer offers and acknowledges offeredA; drop says how many of
// the first messages are lost.
func simpleServer(drop int) func(*Message, netip.Addr) []*Message {
	n := 0
	return func(m *Message, _ netip.Addr) []*Message {
		if n++; n <= drop {
			return nil
		}
		switch m.Type() {
		case Discover:
			return []*Message{reply(m, Offer, serverA, offeredA)}
		case Request:
			return []*Message{reply(m, Ack, serverA, offeredA)}
		}
		return nil
	}
}

func newTestClient(t *testing.T, s *fakeServer) *Client {
	t.Helper()
	c, err := newClient(testConfig, s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAcquireSendsWhatRFC2131Asks(t *testing.T) {
	s := &fakeServer{serve: simpleServer(0)}
	before := time.Now()
	l, err := newTestClient(t, s).Acquire(context.Background(), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != netip.MustParsePrefix("192.168.64.7/24") || l.ServerID != serverA || l.Duration != 2*time.Minute ||
		l.T1 != time.Minute || l.Start.Before(before) {
		t.Fatalf("lease %+v", l)
	}
	sent := s.messages()
	if len(sent) != 2 || sent[0].Type() != Discover || sent[1].Type() != Request {
		t.Fatalf("sent %v", sent)
	}
	for _, m := range sent {
		if m.Op != opRequest || m.Flags != 0 || !m.ClientIP.IsUnspecified() || m.HWAddr.String() != testMAC.String() ||
			string(m.Options[OptHostname]) != "web-1" || string(m.Options[OptClientID]) != string(append([]byte{1}, testMAC...)) ||
			len(m.Options[OptParamRequest]) == 0 {
			t.Fatalf("%s: %+v", m.Type(), m)
		}
	}
	if sent[0].XID != sent[1].XID {
		t.Fatal("REQUEST has another xid than DISCOVER")
	}
	if ip, _ := sent[1].Options.Addr(OptRequestedIP); ip != offeredA {
		t.Fatalf("requested %v", ip)
	}
	if id, _ := sent[1].Options.Addr(OptServerID); id != serverA {
		t.Fatalf("server id %v", id)
	}
	if s.kinds[0] != "unconfigured" || s.dsts[0] != broadcastAddr {
		t.Fatalf("transport %v to %v", s.kinds, s.dsts)
	}
}

func TestAcquireRetransmitsLostMessages(t *testing.T) {
	s := &fakeServer{serve: simpleServer(2)} // first DISCOVER and its resend lost
	if _, err := newTestClient(t, s).Acquire(context.Background(), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if types := typesOf(s.messages()); types != "DISCOVER DISCOVER DISCOVER REQUEST" {
		t.Fatalf("sent %s", types)
	}
}

func typesOf(ms []*Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Type().String())
	}
	return strings.Join(s, " ")
}

func TestAcquireIgnoresOthersAndStartsOverOnNAK(t *testing.T) {
	other := netip.MustParseAddr("192.168.64.2")
	requests := 0
	s := &fakeServer{serve: func(m *Message, _ netip.Addr) []*Message {
		switch m.Type() {
		case Discover:
			wrongXID := reply(m, Offer, serverA, offeredA)
			wrongXID.XID++
			wrongMAC := reply(m, Offer, serverA, offeredA)
			wrongMAC.HWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9}
			noID := reply(m, Offer, serverA, offeredA)
			delete(noID.Options, OptServerID)
			return []*Message{wrongXID, wrongMAC, noID, reply(m, Offer, serverA, offeredA)}
		case Request:
			if requests++; requests == 1 {
				return []*Message{reply(m, Ack, other, offeredA), reply(m, Nak, serverA, netip.Addr{})}
			}
			return []*Message{reply(m, Ack, serverA, offeredA)}
		}
		return nil
	}}
	l, err := newTestClient(t, s).Acquire(context.Background(), offeredA)
	if err != nil {
		t.Fatal(err)
	}
	if l.ServerID != serverA {
		t.Fatalf("took the ACK of %v", l.ServerID)
	}
	sent := s.messages()
	if types := typesOf(sent); types != "DISCOVER REQUEST DISCOVER REQUEST" {
		t.Fatalf("sent %s", types)
	}
	if ip, _ := sent[0].Options.Addr(OptRequestedIP); ip != offeredA {
		t.Fatal("first DISCOVER does not ask for the previous address")
	}
	if _, ok := sent[2].Options[OptRequestedIP]; ok || sent[2].XID == sent[0].XID {
		t.Fatal("after a NAK the client should start over with a new xid and no requested address")
	}
}

func TestAcquireTimesOutNamingTheInterface(t *testing.T) {
	s := &fakeServer{serve: func(*Message, netip.Addr) []*Message { return nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := newTestClient(t, s).Acquire(ctx, netip.Addr{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	for _, want := range []string{"eth0", testMAC.String(), "no offer", "DISCOVERs sent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// 5, 10, 20, 20... ms (±1/8): 6 to 9 fit in 100 ms; no busy
	// resending as the deadline nears.
	if n := len(s.messages()); n < 4 || n > 10 {
		t.Fatalf("%d DISCOVERs in 100 ms with 5-20 ms back-off", n)
	}
}

func TestRenewUnicastsAndRebindBroadcasts(t *testing.T) {
	var nak bool
	s := &fakeServer{serve: func(m *Message, dst netip.Addr) []*Message {
		if nak {
			return []*Message{reply(m, Nak, serverA, netip.Addr{})}
		}
		return []*Message{reply(m, Ack, serverA, m.ClientIP)}
	}}
	c := newTestClient(t, s)
	old := &Lease{Address: netip.MustParsePrefix("192.168.64.7/24"), ServerID: serverA, Start: time.Now().Add(-time.Minute)}
	l, err := c.Renew(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rebind(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	if l.Address != old.Address || !l.Start.After(old.Start) {
		t.Fatalf("renewed %+v", l)
	}
	sent := s.messages()
	if s.dsts[0] != serverA || s.dsts[1] != broadcastAddr || s.kinds[0] != "configured" {
		t.Fatalf("sent to %v over %v", s.dsts, s.kinds)
	}
	for _, m := range sent {
		_, has50 := m.Options[OptRequestedIP]
		_, has54 := m.Options[OptServerID]
		if m.Type() != Request || m.ClientIP != offeredA || has50 || has54 {
			t.Fatalf("renewal request %+v", m)
		}
	}
	nak = true
	if _, err := c.Renew(context.Background(), old); !errors.Is(err, ErrNAK) {
		t.Fatalf("NAK: %v", err)
	}
}
