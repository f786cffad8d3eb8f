package balloon

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

const mib = 1 << 20

// guest is a fake guest kernel with virtio_balloon: it uses some memory,
// and the balloon's pages leave MemTotal (no deflate-on-OOM) or stay in it
// as allocated memory (deflate-on-OOM).
type guest struct {
	size, used, target uint64
	deflateOnOOM       bool
}

func (g *guest) sample() Sample {
	balloon := g.size - g.target
	if g.deflateOnOOM {
		return Sample{TotalBytes: g.size, AvailableBytes: g.size - min(g.size, g.used+balloon)}
	}
	total := g.size - balloon
	return Sample{TotalBytes: total, AvailableBytes: total - min(total, g.used)}
}

func newTestController(t *testing.T, p Policy) *Controller {
	t.Helper()
	c, err := NewController(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// step feeds n samples of g to c, applying each target to g, and returns
// the targets that changed.
func step(c *Controller, g *guest, n int) []uint64 {
	var changes []uint64
	for range n {
		if target, changed := c.Next(g.sample()); changed {
			g.target = target
			c.Applied(target)
			changes = append(changes, target/mib)
		}
	}
	return changes
}

func TestIdleGuestGivesBackAllButHeadroom(t *testing.T) {
	for _, oom := range []bool{false, true} {
		g := &guest{size: 640 * mib, used: 70 * mib, target: 640 * mib, deflateOnOOM: oom}
		c := newTestController(t, Policy{MemoryBytes: 640 * mib, FloorBytes: 128 * mib})
		// Nothing before ShrinkAfter samples agree.
		if ch := step(c, g, DefaultShrinkAfter-1); len(ch) != 0 {
			t.Fatalf("deflateOnOOM=%v: changed after %d samples: %v", oom, DefaultShrinkAfter-1, ch)
		}
		// used 70 + headroom 64 = 134 MiB, above the floor.
		if ch := step(c, g, 1); len(ch) != 1 || ch[0] != 134 {
			t.Fatalf("deflateOnOOM=%v: changes %v, want [134]", oom, ch)
		}
		// Steady: the guest's own sample with the balloon out changes nothing.
		if ch := step(c, g, 20); len(ch) != 0 {
			t.Fatalf("deflateOnOOM=%v: a steady guest moved the balloon: %v", oom, ch)
		}
	}
}

func TestNeverBelowTheFloor(t *testing.T) {
	g := &guest{size: 1152 * mib, used: 40 * mib, target: 1152 * mib}
	c := newTestController(t, Policy{MemoryBytes: 1152 * mib, FloorBytes: 512*mib + 128*mib + 1})
	step(c, g, 10)
	if g.target != 641*mib {
		t.Fatalf("target %d MiB, want the floor rounded up to 641 MiB", g.target/mib)
	}
	// A floor above the size is the size: the balloon never inflates.
	c = newTestController(t, Policy{MemoryBytes: 256 * mib, FloorBytes: 1 << 30})
	g = &guest{size: 256 * mib, used: 10 * mib, target: 256 * mib}
	if ch := step(c, g, 10); len(ch) != 0 {
		t.Fatalf("changes %v with a floor above the size", ch)
	}
}

func TestPressureDeflatesAtOnce(t *testing.T) {
	g := &guest{size: 640 * mib, used: 70 * mib, target: 640 * mib}
	c := newTestController(t, Policy{MemoryBytes: 640 * mib, FloorBytes: 128 * mib})
	step(c, g, DefaultShrinkAfter)
	if g.target != 134*mib {
		t.Fatalf("target %d MiB, want 134", g.target/mib)
	}
	// The container allocates: free inside the target drops below half the
	// headroom (134-110 = 24 < 32) and the balloon empties in one sample.
	g.used = 110 * mib
	if ch := step(c, g, 1); len(ch) != 1 || ch[0] != 640 {
		t.Fatalf("changes %v, want [640] at once", ch)
	}
	// The spike passes: the memory goes back after ShrinkAfter samples.
	g.used = 70 * mib
	if ch := step(c, g, DefaultShrinkAfter); len(ch) != 1 || ch[0] != 134 {
		t.Fatalf("changes %v, want [134]", ch)
	}
}

func TestHysteresis(t *testing.T) {
	g := &guest{size: 640 * mib, used: 100 * mib, target: 640 * mib}
	c := newTestController(t, Policy{MemoryBytes: 640 * mib, FloorBytes: 64 * mib})
	step(c, g, DefaultShrinkAfter)
	if g.target != 164*mib {
		t.Fatalf("target %d MiB, want 164", g.target/mib)
	}
	// Use wobbling inside the band (free between 32 and 96 MiB) never
	// moves the balloon.
	for i, used := range []uint64{80, 120, 70, 131, 100, 69, 125} {
		g.used = used * mib
		if ch := step(c, g, 1); len(ch) != 0 {
			t.Fatalf("sample %d (used %d MiB): changes %v", i, used, ch)
		}
	}
	// Below the band, an interrupted streak starts over.
	g.used = 20 * mib
	step(c, g, DefaultShrinkAfter-1)
	g.used = 100 * mib
	step(c, g, 1)
	g.used = 20 * mib
	if ch := step(c, g, DefaultShrinkAfter-1); len(ch) != 0 {
		t.Fatalf("an interrupted streak shrank: %v", ch)
	}
	if ch := step(c, g, 1); len(ch) != 1 || ch[0] != 84 {
		t.Fatalf("changes %v, want [84]", ch)
	}
}

func TestNewControllerRejectsZeroSize(t *testing.T) {
	if _, err := NewController(Policy{}); err == nil {
		t.Fatal("a zero memory size was accepted")
	}
}

// fakeMachine records targets; SetTarget fails while failSet is set.
type fakeMachine struct {
	mu      sync.Mutex
	g       *guest
	targets []uint64
	failSet bool
	sampled chan struct{}
}

func (m *fakeMachine) sample(context.Context) (Sample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() { m.sampled <- struct{}{} }()
	if m.g == nil {
		return Sample{}, errors.New("agent not up")
	}
	return m.g.sample(), nil
}

func (m *fakeMachine) setTarget(_ context.Context, target uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failSet {
		return errors.New("balloon busy")
	}
	m.g.target = target
	m.targets = append(m.targets, target/mib)
	return nil
}

func TestRunSetsTargetsAndRetriesFailures(t *testing.T) {
	tick := make(chan time.Time)
	m := &fakeMachine{sampled: make(chan struct{}, 1)}
	c := newTestController(t, Policy{MemoryBytes: 640 * mib, FloorBytes: 128 * mib, ShrinkAfter: 1})
	l := &Loop{Controller: c, Sample: m.sample, SetTarget: m.setTarget, tick: tick}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	round := func() {
		tick <- time.Time{}
		<-m.sampled
	}
	round() // no guest yet: skipped
	m.mu.Lock()
	m.g, m.failSet = &guest{size: 640 * mib, used: 70 * mib, target: 640 * mib}, true
	m.mu.Unlock()
	round() // the controller wants 134 MiB; SetTarget fails
	m.mu.Lock()
	m.failSet = false
	m.mu.Unlock()
	round() // retried: the controller's target is ahead of the machine's
	round() // steady
	cancel()
	<-done
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.targets) != 1 || m.targets[0] != 134 {
		t.Fatalf("targets set %v, want [134] once", m.targets)
	}
}
