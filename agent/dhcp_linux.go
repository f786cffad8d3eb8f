package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/dhcp"
)

// dhcpAcquireTimeout bounds acquiring a lease in Setup when the caller's
// deadline is later. bootpd on the same Mac answers within milliseconds;
// the time is for resending what was lost while the link came up.
const dhcpAcquireTimeout = 30 * time.Second

// acquireBudget is how long Setup tries for a lease: dhcpAcquireTimeout,
// or less so as to give up a tenth before the caller's deadline; the
// caller then gets the error saying what was heard, not a bare deadline.
func acquireBudget(ctx context.Context, now time.Time) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return dhcpAcquireTimeout
	}
	left := d.Sub(now)
	return min(dhcpAcquireTimeout, left-left/10)
}

// dhcpAfter is how lease keepers wait for T1 and retries; tests replace
// it (export_dhcp_linux_test.go) to trigger a renewal at once.
var dhcpAfter = time.After

// leaseFunc obtains the addresses of an interface with dhcp=true, once it
// is up under its final name.
type leaseFunc func(nl *rtnl, link nlLink, iface *api.Interface, name string) ([]string, error)

// dhcpSetup is the DHCP part of one Setup call.
type dhcpSetup struct {
	s     *Server
	ctx   context.Context // the Setup call's
	files *guestFiles
}

func (s *Server) newDHCPSetup(ctx context.Context, req *api.SetupRequest) *dhcpSetup {
	s.mu.Lock()
	hostname := s.hostname
	s.mu.Unlock()
	return &dhcpSetup{s: s, ctx: ctx, files: newGuestFiles(filepath.Join(s.cfg.StateDir, "etc"), hostname, req)}
}

// lease is the leaseFunc of this Setup: it acquires a lease, applies it,
// and leaves a keeper renewing it for the life of the server.
func (d *dhcpSetup) lease(nl *rtnl, link nlLink, iface *api.Interface, name string) ([]string, error) {
	if len(iface.GetAddresses()) > 0 {
		return nil, fmt.Errorf("interface %s: dhcp and static addresses %v: %w", name, iface.GetAddresses(), ErrInvalidArgument)
	}
	// A repeated Setup starts over on the interface.
	d.s.leases.stop(link.mac.String())
	c, err := dhcp.New(dhcp.Config{Interface: name, Index: int(link.index), MAC: link.mac, Hostname: d.files.hostname, Log: d.s.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(d.ctx, acquireBudget(d.ctx, time.Now()))
	defer cancel()
	begin := time.Now()
	l, err := c.Acquire(ctx, netip.Addr{})
	if err != nil {
		return nil, err // names the interface and what was heard
	}
	if err := applyLease(nl, link.index, nil, l); err != nil {
		return nil, fmt.Errorf("dhcp on %s: apply lease %s: %w", name, l.Address, err)
	}
	d.s.log.Info("dhcp lease", "interface", name, "address", l.Address, "router", l.Router, "dns", l.DNS,
		"server", l.ServerID, "lease", l.Duration, "took", time.Since(begin).Round(time.Millisecond))
	mac := link.mac.String()
	d.files.setLease(mac, l)
	d.s.leases.start(d.s.ctx, mac, func(ctx context.Context) {
		err := c.Maintain(ctx, l, dhcp.MaintainConfig{
			After: dhcpAfter,
			Apply: func(_ context.Context, old, next *dhcp.Lease) error {
				nl, err := openRtnl()
				if err != nil {
					return err
				}
				defer nl.Close()
				if err := applyLease(nl, link.index, old, next); err != nil {
					return err
				}
				if old.Address != next.Address {
					// The host recorded the first address (SetupResponse).
					d.s.log.Warn("dhcp address changed", "interface", name, "old", old.Address, "new", next.Address)
				}
				return d.files.update(mac, next)
			},
		})
		d.s.log.Debug("dhcp lease keeper stopped", "interface", name, "err", err)
	})
	return []string{l.Address.String()}, nil
}

type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// keepers are a server's running lease renewals, by MAC; they end with the
// server's context.
type keepers struct {
	mu sync.Mutex
	m  map[string]*keeper
}

// start runs fn under a context derived from life until stop(mac).
func (k *keepers) start(life context.Context, mac string, fn func(context.Context)) {
	ctx, cancel := context.WithCancel(life)
	kp := &keeper{cancel: cancel, done: make(chan struct{})}
	k.mu.Lock()
	k.m[mac] = kp
	k.mu.Unlock()
	go func() {
		defer close(kp.done)
		fn(ctx)
		k.mu.Lock()
		if k.m[mac] == kp {
			delete(k.m, mac)
		}
		k.mu.Unlock()
	}()
}

// stop ends the keeper of mac, if any, and waits for it.
func (k *keepers) stop(mac string) {
	k.mu.Lock()
	kp := k.m[mac]
	delete(k.m, mac)
	k.mu.Unlock()
	if kp != nil {
		kp.cancel()
		<-kp.done
	}
}
