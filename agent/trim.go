package agent

import (
	"sync"
	"time"
)

// DefaultMemoryTrimDelay is how long the agent waits after its last
// request before it hands its free heap back to the guest's kernel.
const DefaultMemoryTrimDelay = time.Second

// idleTrimmer returns the agent's free heap memory to the guest once
// requests pause. Go's background scavenger releases free pages slowly and
// keeps some headroom above the heap goal; after a burst of requests (exec
// output, files volumes) that is about a MiB of the guest's memory the
// agent holds on to for nothing (hack/bench: agent RSS after a workload).
// One forced collection per pause is cheap next to what a burst cost.
type idleTrimmer struct {
	delay time.Duration
	trim  func()
	// afterFunc is time.AfterFunc; tests replace it.
	afterFunc func(time.Duration, func()) resettable

	mu      sync.Mutex
	timer   resettable
	stopped bool
}

// resettable is the part of *time.Timer the trimmer uses.
type resettable interface {
	Reset(time.Duration) bool
	Stop() bool
}

func newIdleTrimmer(delay time.Duration, trim func()) *idleTrimmer {
	return &idleTrimmer{delay: delay, trim: trim, afterFunc: func(d time.Duration, f func()) resettable {
		return time.AfterFunc(d, f)
	}}
}

// poke (re)starts the countdown to the next trim: requests call it when
// they start and when they end.
func (t *idleTrimmer) poke() {
	if t == nil || t.delay <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if t.timer == nil {
		t.timer = t.afterFunc(t.delay, t.trim)
		return
	}
	// Reset also re-arms a timer that has fired: a new pause, a new trim.
	t.timer.Reset(t.delay)
}

// stop cancels a pending trim for good.
func (t *idleTrimmer) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}
