package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// requestTries bounds the REQUEST retransmissions after an OFFER before
// the client starts over with DISCOVER (RFC 2131 §4.4.1 leaves the number
// to the client; the server that offered may have gone).
const requestTries = 4

// broadcastAddr is the limited broadcast address.
var broadcastAddr = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Acquire obtains a lease: DISCOVER → OFFER → REQUEST → ACK (RFC 2131
// §4.4.1) through a packet socket, since the interface has no address
// yet. requested, when valid, asks for a previous address again. A NAK
// starts over. It returns when ctx ends, with an error naming the
// interface and what was heard.
func (c *Client) Acquire(ctx context.Context, requested netip.Addr) (*Lease, error) {
	tr, err := c.tr.unconfigured(ctx, &c.cfg)
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", c.cfg.Interface, err)
	}
	// Closing a packet socket waits for an RCU grace period in the kernel
	// (packet_release → synchronize_net), measured at 13 ms here: not on
	// the caller's time.
	defer func() { go tr.Close() }()
	begin := time.Now()
	discovers, naks := 0, 0
	for {
		xid := newXID()
		discover := c.message(Discover, xid)
		if requested.IsValid() {
			discover.Options.SetAddr(OptRequestedIP, requested)
		}
		offer, n, err := c.exchange(ctx, tr, discover, begin, 0, func(m *Message) (bool, error) {
			_, hasID := m.Options.Addr(OptServerID)
			return m.Type() == Offer && m.YourIP.Is4() && !m.YourIP.IsUnspecified() && hasID, nil
		})
		discovers += n
		if err != nil {
			return nil, c.acquireErr(begin, discovers, naks, "no offer from a DHCP server", err)
		}
		server, _ := offer.Options.Addr(OptServerID)
		req := c.message(Request, xid)
		req.Options.SetAddr(OptRequestedIP, offer.YourIP)
		req.Options.SetAddr(OptServerID, server)
		start := time.Now()
		ack, _, err := c.exchange(ctx, tr, req, begin, requestTries, c.matchAck(server))
		switch {
		case err == nil:
			l, err := leaseFromAck(ack, server, start)
			if err != nil {
				return nil, fmt.Errorf("dhcp on %s: server %s: %w", c.cfg.Interface, server, err)
			}
			return l, nil
		case errors.Is(err, ErrNAK):
			naks++
			requested = netip.Addr{}
			c.log.Info("dhcp request refused, starting over", "offered", offer.YourIP, "server", server, "message", string(ack.Options[OptMessage]))
			// Do not spin against a server that NAKs everything.
			if err := sleep(ctx, c.backoff(naks-1)); err != nil {
				return nil, c.acquireErr(begin, discovers, naks, "no lease", err)
			}
		case errors.Is(err, errNoReply):
			c.log.Info("dhcp server stopped answering, starting over", "offered", offer.YourIP, "server", server)
		default:
			return nil, c.acquireErr(begin, discovers, naks, fmt.Sprintf("no ACK from %s for %s", server, offer.YourIP), err)
		}
	}
}

func (c *Client) acquireErr(begin time.Time, discovers, naks int, what string, err error) error {
	nak := ""
	if naks > 0 {
		nak = fmt.Sprintf(", %d NAKs", naks)
	}
	return fmt.Errorf("dhcp on %s (%s): %s in %s (%d DISCOVERs sent%s): %w",
		c.cfg.Interface, c.cfg.MAC, what, time.Since(begin).Round(time.Millisecond), discovers, nak, err)
}

// matchAck accepts an ACK from server, or fails on its NAK; replies of
// other servers (to our broadcast REQUEST, which they read as a decline
// of their offer) are ignored. An invalid server accepts any.
func (c *Client) matchAck(server netip.Addr) func(*Message) (bool, error) {
	return func(m *Message) (bool, error) {
		if id, ok := m.Options.Addr(OptServerID); ok && server.IsValid() && id != server {
			return false, nil
		}
		switch m.Type() {
		case Ack:
			return true, nil
		case Nak:
			msg := ""
			if s := m.Options[OptMessage]; len(s) > 0 {
				msg = ": " + string(s)
			}
			return false, fmt.Errorf("%w%s", ErrNAK, msg)
		}
		return false, nil
	}
}

// Renew extends a lease by asking its server directly (RENEWING, RFC 2131
// §4.4.5) from the leased address. It retransmits until ctx ends.
func (c *Client) Renew(ctx context.Context, l *Lease) (*Lease, error) {
	return c.extend(ctx, l, l.ServerID, "renew")
}

// Rebind extends a lease by asking any server (REBINDING, after T2).
func (c *Client) Rebind(ctx context.Context, l *Lease) (*Lease, error) {
	return c.extend(ctx, l, broadcastAddr, "rebind")
}

func (c *Client) extend(ctx context.Context, l *Lease, dst netip.Addr, what string) (*Lease, error) {
	tr, err := c.tr.configured(ctx, &c.cfg, dst)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s %s on %s: %w", what, l.Address.Addr(), c.cfg.Interface, err)
	}
	defer tr.Close()
	// RENEWING and REBINDING requests carry the address in ciaddr and
	// neither option 50 nor 54 (RFC 2131 §4.3.2, table 5).
	req := c.message(Request, newXID())
	req.ClientIP = l.Address.Addr()
	begin := time.Now()
	server := l.ServerID
	if dst == broadcastAddr {
		server = netip.Addr{} // any server may answer a rebind
	}
	ack, _, err := c.exchange(ctx, tr, req, begin, 0, c.matchAck(server))
	if err != nil {
		return nil, fmt.Errorf("dhcp %s %s on %s with %s: %w", what, l.Address.Addr(), c.cfg.Interface, dst, err)
	}
	next, err := leaseFromAck(ack, l.ServerID, begin)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s on %s: %w", what, c.cfg.Interface, err)
	}
	return next, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
