package agent

import (
	"context"
	"sync"
)

// inflight counts calls in progress (Attach, Forward) so that Shutdown can
// let them deliver their last output before the guest powers off.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n is 0
}

func newInflight() *inflight {
	z := make(chan struct{})
	close(z)
	return &inflight{zero: z}
}

// add counts a call; the caller calls the returned func when it ends.
func (f *inflight) add() (done func()) {
	f.mu.Lock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.n--; f.n == 0 {
				close(f.zero)
			}
		})
	}
}

// wait blocks until no call is in progress or ctx ends.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	z := f.zero
	f.mu.Unlock()
	select {
	case <-z:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
