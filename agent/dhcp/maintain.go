package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// MaintainConfig says what Maintain does with new leases and how it waits.
type MaintainConfig struct {
	// Apply installs a lease that replaces old: the same address renewed
	// (new times, maybe new options) or, after a NAK or an expiry, a new
	// one. Its error is logged; the lease is kept and the next renewal
	// applies again.
	Apply func(ctx context.Context, old, next *Lease) error
	// After waits for d, as time.After (the default). Tests replace it to
	// trigger renewals without waiting out a lease.
	After func(d time.Duration) <-chan time.Time
	// Now is the clock lease times are measured on (default time.Now).
	Now func() time.Time
}

// Timing of a renewal attempt (RFC 2131 §4.4.5): after a failed attempt
// the client waits half the time left until T2 (or the expiry), but at
// least minRetryWait.
const (
	minRetryWait   = 60 * time.Second
	attemptTimeout = 30 * time.Second // one attempt's retransmissions
	reacquireWait  = 10 * time.Second // between failed acquisitions after an expiry
)

// extender is what Maintain drives: the Client, or a fake in tests.
type extender interface {
	Acquire(ctx context.Context, requested netip.Addr) (*Lease, error)
	Renew(ctx context.Context, l *Lease) (*Lease, error)
	Rebind(ctx context.Context, l *Lease) (*Lease, error)
}

// Maintain keeps the lease for as long as ctx lives: it renews at T1,
// rebinds at T2 and, when the lease has expired or a server refused it,
// acquires a new one. It returns ctx's error.
func (c *Client) Maintain(ctx context.Context, l *Lease, cfg MaintainConfig) error {
	return maintain(ctx, c, l, cfg, c.log)
}

type maintainer struct {
	ext extender
	cfg MaintainConfig
	log *slog.Logger
}

func maintain(ctx context.Context, ext extender, l *Lease, cfg MaintainConfig, log *slog.Logger) error {
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &maintainer{ext: ext, cfg: cfg, log: log}
	for {
		next, err := m.cycle(ctx, l)
		if err != nil {
			return err
		}
		if cfg.Apply != nil {
			if err := cfg.Apply(ctx, l, next); err != nil {
				m.log.Error("dhcp apply lease", "address", next.Address, "err", err)
			}
		}
		l = next
	}
}

// cycle waits for T1 and returns the lease that follows l.
func (m *maintainer) cycle(ctx context.Context, l *Lease) (*Lease, error) {
	if l.Duration == Infinite {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := m.waitUntil(ctx, l.Start.Add(l.T1)); err != nil {
		return nil, err
	}
	next, err := m.phase(ctx, "renew", m.ext.Renew, l, l.Start.Add(l.T2))
	if next != nil || ctx.Err() != nil {
		return next, err
	}
	if !errors.Is(err, ErrNAK) {
		m.log.Warn("dhcp lease not renewed by T2, rebinding", "address", l.Address, "err", err)
		next, err = m.phase(ctx, "rebind", m.ext.Rebind, l, l.Expiry())
		if next != nil || ctx.Err() != nil {
			return next, err
		}
	}
	m.log.Warn("dhcp lease lost, acquiring a new one", "address", l.Address, "err", err)
	return m.reacquire(ctx, l.Address.Addr())
}

// phase retries try until it succeeds, a server refuses (ErrNAK), or
// until passes.
func (m *maintainer) phase(ctx context.Context, what string, try func(context.Context, *Lease) (*Lease, error), l *Lease, until time.Time) (*Lease, error) {
	var err error
	for {
		left := until.Sub(m.cfg.Now())
		if left <= 0 {
			if err == nil {
				err = fmt.Errorf("%s: no time left before %s", what, until.Format(time.RFC3339))
			}
			return nil, err
		}
		actx, cancel := context.WithTimeout(ctx, min(attemptTimeout, left))
		var next *Lease
		next, err = try(actx, l)
		cancel()
		if err == nil {
			m.log.Info("dhcp lease extended", "by", what, "address", next.Address, "lease", next.Duration)
			return next, nil
		}
		if errors.Is(err, ErrNAK) || ctx.Err() != nil {
			return nil, err
		}
		m.log.Warn("dhcp "+what+" failed, will retry", "address", l.Address, "err", err)
		left = until.Sub(m.cfg.Now())
		if err := m.wait(ctx, min(max(left/2, minRetryWait), left)); err != nil {
			return nil, err
		}
	}
}

// reacquire obtains a new lease, asking for the old address, until it
// succeeds or ctx ends.
func (m *maintainer) reacquire(ctx context.Context, prev netip.Addr) (*Lease, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		next, err := m.ext.Acquire(actx, prev)
		cancel()
		if err == nil {
			return next, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.log.Warn("dhcp acquire failed, will retry", "err", err)
		if err := m.wait(ctx, reacquireWait); err != nil {
			return nil, err
		}
	}
}

func (m *maintainer) waitUntil(ctx context.Context, t time.Time) error {
	return m.wait(ctx, max(t.Sub(m.cfg.Now()), 0))
}

func (m *maintainer) wait(ctx context.Context, d time.Duration) error {
	select {
	case <-m.cfg.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
