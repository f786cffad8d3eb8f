package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances when the maintainer waits, so a whole lease passes
// at once; it records every wait.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// scriptedServer answers Renew, Rebind and Acquire with what script
// says for the call ("ok", "fail", "nak", or "stop" to end the test), and
// logs the calls.
type scriptedServer struct {
	clock  *fakeClock
	script func(call string, n int) string // n counts calls of that kind from 1
	calls  []string
	counts map[string]int
	cancel context.CancelFunc
}

func (s *scriptedServer) next(what string, addr netip.Prefix) (*Lease, error) {
	s.calls = append(s.calls, what)
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	kind, _, _ := strings.Cut(what, " ")
	s.counts[kind]++
	switch s.script(kind, s.counts[kind]) {
	case "fail":
		return nil, errors.New("timed out")
	case "nak":
		return nil, fmt.Errorf("renew: %w", ErrNAK)
	case "ok":
		return &Lease{Address: addr, Duration: 2 * time.Hour, T1: time.Hour, T2: 105 * time.Minute, Start: s.clock.Now()}, nil
	}
	s.cancel()
	return nil, context.Canceled
}

func (s *scriptedServer) Renew(_ context.Context, l *Lease) (*Lease, error) {
	return s.next("renew", l.Address)
}

func (s *scriptedServer) Rebind(_ context.Context, l *Lease) (*Lease, error) {
	return s.next("rebind", l.Address)
}

func (s *scriptedServer) Acquire(_ context.Context, prev netip.Addr) (*Lease, error) {
	return s.next("acquire "+prev.String(), netip.MustParsePrefix("10.0.0.99/24"))
}

// runMaintain plays a script against an eight-hour lease (T1 4 h, T2 7 h)
// taken at the clock's start; it returns the calls, the waits and the
// applied addresses.
func runMaintain(t *testing.T, script func(call string, n int) string) (calls []string, waits []time.Duration, applied []string) {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &scriptedServer{clock: clock, script: script, cancel: cancel}
	first := &Lease{Address: netip.MustParsePrefix("10.0.0.7/24"), Duration: 8 * time.Hour, T1: 4 * time.Hour, T2: 7 * time.Hour, Start: clock.Now()}
	err := maintain(ctx, srv, first, MaintainConfig{
		After: clock.After, Now: clock.Now,
		Apply: func(_ context.Context, old, next *Lease) error {
			applied = append(applied, old.Address.Addr().String()+">"+next.Address.Addr().String())
			return nil
		},
	}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("maintain returned %v", err)
	}
	return srv.calls, clock.waits, applied
}

func TestMaintainRenewsAtT1(t *testing.T) {
	calls, waits, applied := runMaintain(t, func(call string, n int) string {
		if call == "renew" && n <= 2 {
			return "ok"
		}
		return "stop"
	})
	if strings.Join(calls, ",") != "renew,renew,renew" {
		t.Fatalf("calls %s", calls)
	}
	// T1 of the first lease, then T1 of each renewed one.
	if fmt.Sprint(waits) != fmt.Sprint([]time.Duration{4 * time.Hour, time.Hour, time.Hour}) {
		t.Fatalf("waits %v", waits)
	}
	if strings.Join(applied, " ") != "10.0.0.7>10.0.0.7 10.0.0.7>10.0.0.7" {
		t.Fatalf("applied %v", applied)
	}
}

func TestMaintainRetriesThenRebindsThenReacquires(t *testing.T) {
	acquired := false
	calls, waits, applied := runMaintain(t, func(call string, n int) string {
		switch {
		case call == "acquire" && n == 2:
			acquired = true
			return "ok"
		case call == "renew" && acquired:
			return "stop"
		}
		return "fail"
	})
	count := map[string]int{}
	for _, c := range calls {
		count[c]++
	}
	renews, rebinds := count["renew"]-1, count["rebind"]
	if count["acquire 10.0.0.7"] != 2 || renews < 3 || rebinds < 2 || len(calls) != renews+rebinds+3 {
		t.Fatalf("calls %v", calls)
	}
	if len(waits) != 1+renews+rebinds+2 {
		t.Fatalf("calls %v, waits %v", calls, waits)
	}
	sum := func(ds []time.Duration) (s time.Duration) {
		for _, d := range ds {
			s += d
		}
		return s
	}
	renewWaits, rebindWaits := waits[1:1+renews], waits[1+renews:1+renews+rebinds]
	// RFC 2131 §4.4.5: after a failure, half the time left until T2 (3 h
	// at T1) or until the expiry (1 h at T2), at least 60 s, never past
	// the phase's end.
	if waits[0] != 4*time.Hour || renewWaits[0] != 90*time.Minute || renewWaits[1] != 45*time.Minute ||
		sum(renewWaits) != 3*time.Hour || rebindWaits[0] != 30*time.Minute || sum(rebindWaits) != time.Hour {
		t.Fatalf("waits %v", waits)
	}
	for _, d := range append(renewWaits[:renews-1], rebindWaits[:rebinds-1]...) {
		if d < minRetryWait {
			t.Fatalf("a retry after %v (minimum %v): %v", d, minRetryWait, waits)
		}
	}
	if tail := waits[len(waits)-2:]; tail[0] != reacquireWait || tail[1] != time.Hour {
		t.Fatalf("after expiry: waits %v, want the reacquire pause, then T1 of the new lease", tail)
	}
	if strings.Join(applied, " ") != "10.0.0.7>10.0.0.99" {
		t.Fatalf("applied %v", applied)
	}
}

func TestMaintainNAKSkipsToAcquire(t *testing.T) {
	calls, _, applied := runMaintain(t, func(call string, n int) string {
		return map[string][]string{"renew": {"nak", "stop"}, "acquire": {"ok"}}[call][n-1]
	})
	if strings.Join(calls, ",") != "renew,acquire 10.0.0.7,renew" || len(applied) != 1 {
		t.Fatalf("calls %s applied %v", calls, applied)
	}
}

func TestMaintainMinimumRetryWait(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &scriptedServer{clock: clock, cancel: cancel, script: func(call string, n int) string {
		if call == "rebind" {
			return "stop"
		}
		return "fail"
	}}
	// T2 90 s after T1: half of it is 45 s, less than the 60 s minimum.
	l := &Lease{Address: netip.MustParsePrefix("10.0.0.7/24"), Duration: 10 * time.Minute, T1: time.Minute, T2: 150 * time.Second, Start: clock.Now()}
	_ = maintain(ctx, srv, l, MaintainConfig{After: clock.After, Now: clock.Now}, slog.New(slog.DiscardHandler))
	if len(clock.waits) < 3 || clock.waits[1] != time.Minute || clock.waits[2] != 30*time.Second {
		t.Fatalf("waits %v, want T1, then 60 s, then the 30 s left until T2", clock.waits)
	}
	if strings.Join(srv.calls, ",") != "renew,renew,rebind" {
		t.Fatalf("calls %v", srv.calls)
	}
}

func TestMaintainKeepsInfiniteLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	srv := &scriptedServer{cancel: cancel}
	l := &Lease{Address: netip.MustParsePrefix("10.0.0.7/24"), Duration: Infinite, T1: Infinite, T2: Infinite, Start: time.Now()}
	if err := maintain(ctx, srv, l, MaintainConfig{}, slog.New(slog.DiscardHandler)); !errors.Is(err, context.DeadlineExceeded) || len(srv.calls) != 0 {
		t.Fatalf("err %v, calls %v", err, srv.calls)
	}
}
