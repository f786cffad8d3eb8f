package podworker

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// withTimeout is context.WithTimeout on clk, so a test's fake clock ends it.
func withTimeout(ctx context.Context, clk clock.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if d <= 0 {
		cancel()
		return ctx, cancel
	}
	t := clk.NewTimer(d)
	go func() {
		defer t.Stop()
		select {
		case <-t.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// until is how long from clk's now to t.
func until(clk clock.PassiveClock, t time.Time) time.Duration { return t.Sub(clk.Now()) }
