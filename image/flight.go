package image

import (
	"context"
	"sync"
)

// flightGroup runs one fn per key at a time and hands its result to every
// caller that asked meanwhile. Unlike x/sync/singleflight, the work runs on
// its own context that is cancelled only when every waiting caller has
// given up, so one caller's timeout does not fail the others.
type flightGroup[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (g *flightGroup[T]) do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[string]*flight[T])
	}
	c := g.calls[key]
	if c == nil {
		// Keep the caller's values (logger) but not its cancellation.
		workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flight[T]{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = c
		go func() {
			c.val, c.err = fn(workCtx)
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			cancel()
			close(c.done)
		}()
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		last := c.waiters == 0
		if last {
			// Nobody wants the result any more: stop the work, and let the
			// next caller start afresh rather than join a cancelled flight.
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		if last {
			// Wait for the work to clean up (temp files, locks) so nothing
			// of it outlives the caller's own locks.
			<-c.done
		}
		var zero T
		return zero, ctx.Err()
	}
}
