package container

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// streamDrainTimeout bounds how long Delete and Stop wait, once the
// container's processes have been ended, for in-flight streams to receive
// their last output and exit status. The agent ends an attach at most its
// drain timeout (2 s) after the process exits; the rest is transit on a
// loaded host. A stream still open after it is cut.
const streamDrainTimeout = 5 * time.Second

// streamSet tracks a sandbox's in-flight attach, exec and forward streams,
// so that teardown lets them finish before it closes the agent connection
// they run on. The zero value is ready to use.
type streamSet struct {
	mu     sync.Mutex
	n      int
	closed bool          // Delete has begun: no new streams
	idle   chan struct{} // closed when n drops to 0; nil while nobody waits
}

// begin registers a stream; the caller calls end when it has finished. It
// fails once the sandbox is being deleted.
func (t *streamSet) begin(what string) (end func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("%s: the sandbox is being deleted: %w", what, ErrStopped)
	}
	t.n++
	var once sync.Once
	return func() { once.Do(t.end) }, nil
}

func (t *streamSet) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// close refuses new streams and reports how many are in flight.
func (t *streamSet) close() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.n
}

// inFlight reports how many streams are in flight.
func (t *streamSet) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// wait blocks until no stream is in flight or ctx ends.
func (t *streamSet) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
