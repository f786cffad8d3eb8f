package balloon

import (
	"context"
	"log/slog"
	"time"
)

// DefaultInterval is how often Run samples the guest. A sample is one
// agent Stats call; two seconds keeps an idle guest idle (the agent trims
// its heap one second after a request) while a guest that runs out of
// headroom waits at most that long for the balloon to let go.
const DefaultInterval = 2 * time.Second

// Loop is what Run needs from the machine and its guest.
type Loop struct {
	Controller *Controller
	// Interval between samples; DefaultInterval when zero.
	Interval time.Duration
	// Sample reads the guest's memory (the agent's Stats).
	Sample func(context.Context) (Sample, error)
	// SetTarget sets the balloon's target guest memory size in bytes.
	SetTarget func(context.Context, uint64) error
	Log       *slog.Logger
	// tick replaces time.NewTicker's channel in tests.
	tick <-chan time.Time
}

// Run samples the guest every Interval and moves the balloon when the
// controller says so, until ctx ends. A failed sample (the agent is busy,
// restarting, or not up yet) skips the round: the balloon stays where it
// is. A failed SetTarget is retried with the next sample.
func (l *Loop) Run(ctx context.Context) {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := l.tick
	if tick == nil {
		interval := l.Interval
		if interval <= 0 {
			interval = DefaultInterval
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	c := l.Controller
	failedSamples := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		s, err := l.Sample(ctx)
		if err != nil {
			// Logged once per run of failures, not every round.
			if failedSamples == 0 && ctx.Err() == nil {
				log.Debug("balloon: sample guest memory", "err", err)
			}
			failedSamples++
			continue
		}
		failedSamples = 0
		from := c.Target()
		target, changed := c.Next(s)
		if !changed {
			continue
		}
		if err := l.SetTarget(ctx, target); err != nil {
			log.Warn("balloon: set target", "targetMiB", target>>20, "err", err)
			continue
		}
		c.Applied(target)
		log.Debug("balloon: target set", "targetMiB", target>>20, "fromMiB", from>>20,
			"guestTotalMiB", s.TotalBytes>>20, "guestAvailableMiB", s.AvailableBytes>>20)
	}
}
