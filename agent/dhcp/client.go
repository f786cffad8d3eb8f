package dhcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"
)

// Config describes the interface a Client runs on.
type Config struct {
	// Interface is the device name (sockets bind to it; errors name it).
	Interface string
	// Index is the device's interface index.
	Index int
	// MAC is the device's hardware address (chaddr).
	MAC net.HardwareAddr
	// Hostname is sent as option 12; empty sends none.
	Hostname string
	// ClientID is option 61; default hardware type 1 and the MAC (RFC 2132
	// §9.14), which is what bootpd and dnsmasq key leases on anyway.
	ClientID []byte
	// FirstRetransmit and MaxRetransmit bound the wait before resending a
	// message, doubling in between (defaults 1 s and 16 s; see backoff).
	FirstRetransmit, MaxRetransmit time.Duration
	// Log receives the exchange at debug level; nil discards.
	Log *slog.Logger
}

// ErrNAK is returned when the server refuses a request (DHCPNAK).
var ErrNAK = errors.New("DHCP server refused the request (NAK)")

// transport carries DHCP messages (the BOOTP payload) for one exchange.
type transport interface {
	Send(ctx context.Context, msg []byte) error
	// Receive returns the next message for the client port; at deadline it
	// returns an error wrapping os.ErrDeadlineExceeded.
	Receive(ctx context.Context, deadline time.Time) ([]byte, error)
	Close() error
}

// transports opens the two kinds of transport (linux.go: real sockets).
type transports interface {
	// unconfigured sends from 0.0.0.0 to the broadcast address and
	// receives whatever reaches the interface.
	unconfigured(ctx context.Context, cfg *Config) (transport, error)
	// configured sends from the leased address to dst (the server, or
	// 255.255.255.255 to rebind).
	configured(ctx context.Context, cfg *Config, dst netip.Addr) (transport, error)
}

// Client obtains and renews leases on one interface.
type Client struct {
	cfg Config
	tr  transports
	log *slog.Logger
}

// New returns a client for the interface; it opens sockets only while an
// exchange runs.
func New(cfg Config) (*Client, error) {
	return newClient(cfg, systemTransports{})
}

func newClient(cfg Config, tr transports) (*Client, error) {
	if len(cfg.MAC) == 0 || len(cfg.MAC) > chaddrLen {
		return nil, fmt.Errorf("dhcp on %s: hardware address %q", cfg.Interface, cfg.MAC)
	}
	if cfg.ClientID == nil {
		cfg.ClientID = append([]byte{htypeEther}, cfg.MAC...)
	}
	if cfg.FirstRetransmit <= 0 {
		// RFC 2131 §4.1 suggests 4 s; the server here is one virtual hop
		// away (bootpd on the same Mac), so a lost packet is one sent
		// before the link came up, and Setup waits for the lease.
		cfg.FirstRetransmit = time.Second
	}
	if cfg.MaxRetransmit < cfg.FirstRetransmit {
		cfg.MaxRetransmit = max(16*time.Second, cfg.FirstRetransmit)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, tr: tr, log: log.With("interface", cfg.Interface)}, nil
}

func newXID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return binary.BigEndian.Uint32(b[:])
}

// paramRequest is option 55: what the client wants to hear about.
var paramRequest = []byte{
	byte(OptSubnetMask), byte(OptRouter), byte(OptDNS), byte(OptDomainName),
	byte(OptLeaseTime), byte(OptServerID), byte(OptRenewalTime), byte(OptRebindingTime),
}

// maxMessageSize is option 57: the largest message the client reads
// (its receive buffer holds a full Ethernet frame).
const maxMessageSize = 1500

// message builds a request of type t with the options every request has.
func (c *Client) message(t MessageType, xid uint32) *Message {
	o := Options{
		OptMessageType:    {byte(t)},
		OptClientID:       c.cfg.ClientID,
		OptParamRequest:   paramRequest,
		OptMaxMessageSize: binary.BigEndian.AppendUint16(nil, maxMessageSize),
	}
	if c.cfg.Hostname != "" {
		o[OptHostname] = []byte(c.cfg.Hostname)
	}
	return &Message{Op: opRequest, XID: xid, HWAddr: c.cfg.MAC, Options: o}
}

// backoff is the wait after try n (0-based): doubling from
// FirstRetransmit to MaxRetransmit, each ±1/8 at random so that VMs
// booted together do not resend in step (RFC 2131 §4.1 randomises ±1 s).
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.FirstRetransmit
	for ; n > 0 && d < c.cfg.MaxRetransmit; n-- {
		d *= 2
	}
	d = min(d, c.cfg.MaxRetransmit)
	var b [2]byte
	_, _ = rand.Read(b[:])
	jitter := time.Duration(int64(binary.BigEndian.Uint16(b[:]))-32768) * (d / 8) / 32768
	return d + jitter
}

// exchange sends msg (re-encoded with the elapsed seconds each time) and
// resends it on the backoff schedule until match accepts a reply, tries
// are used up (0: no limit) or ctx ends. match sees only replies with
// the message's xid and the client's hardware address.
func (c *Client) exchange(ctx context.Context, tr transport, msg *Message, begin time.Time, tries int,
	match func(*Message) (bool, error)) (*Message, int, error) {
	for n := 0; tries == 0 || n < tries; n++ {
		msg.Secs = uint16(min(time.Since(begin)/time.Second, 0xffff))
		b, err := msg.Marshal()
		if err != nil {
			return nil, n, err
		}
		c.log.Debug("dhcp send", "type", msg.Type(), "xid", msg.XID, "try", n+1)
		if err := tr.Send(ctx, b); err != nil {
			return nil, n + 1, fmt.Errorf("send %s: %w", msg.Type(), err)
		}
		deadline := time.Now().Add(c.backoff(n))
		for {
			raw, err := tr.Receive(ctx, deadline)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
					// ctx's own timer may not have fired yet.
					return nil, n + 1, context.DeadlineExceeded
				}
				break // resend
			}
			if err != nil {
				return nil, n + 1, err
			}
			reply, err := Parse(raw)
			if err != nil {
				c.log.Debug("dhcp ignore packet", "err", err)
				continue
			}
			if reply.Op != opReply || reply.XID != msg.XID || !bytes.Equal(reply.HWAddr, c.cfg.MAC) {
				continue // another client's exchange
			}
			c.log.Debug("dhcp receive", "type", reply.Type(), "xid", reply.XID, "yiaddr", reply.YourIP)
			ok, err := match(reply)
			if err != nil {
				return reply, n + 1, err
			}
			if ok {
				return reply, n + 1, nil
			}
		}
	}
	return nil, tries, errNoReply
}

var errNoReply = errors.New("no reply")
