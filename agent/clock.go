package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The guest's wall clock stops while its VM is paused (a Mac asleep stops
// every vz guest; UTM #5252) and lags by the pause afterwards. The RTC does
// not: vz's PL031 and QEMU's CMOS RTC (clock=host, its default) follow the
// host's time. So the agent compares the two now and then and, when they
// disagree, sets the clock to the RTC at the tick of its next second.
//
// An RTC's seconds need not tick on the host's second boundaries: QEMU's
// starts counting at the whole second it read at start-up, so its ticks lag
// the host's by that moment's fraction (0.7 s in one run here). Right after
// Setup has set the host's time, Calibrate measures that lag (the phase)
// at one tick, and later steps add it back.
const (
	// ClockCheckInterval paces the comparison: a resumed guest is within a
	// second of the host at most this long plus a second later.
	ClockCheckInterval = 2 * time.Second
	// rtcTickPoll paces the wait for the RTC's next second; it bounds the
	// error of the clock it sets.
	rtcTickPoll = 5 * time.Millisecond
)

// ClockKeeper keeps the wall clock on the RTC.
type ClockKeeper struct {
	mu    sync.Mutex
	phase time.Duration // host time at an RTC tick minus the RTC's value
	// pending: a calibration is scheduled (CalibrateAfter); Check leaves
	// the clock, which Setup has just set, alone until it is done.
	pending bool

	// ReadRTC returns the RTC's time (whole seconds, UTC).
	ReadRTC func() (time.Time, error)
	// Now and Set read and set the wall clock.
	Now func() time.Time
	Set func(time.Time) error
	// Sleep waits, or returns early with ctx's error.
	Sleep func(ctx context.Context, d time.Duration) error
	Log   *slog.Logger
}

// Run checks every interval until ctx ends. The first check waits an
// interval: at boot the kernel has just set the clock from the RTC and
// Setup sets the host's time, and the agent's start needs the CPU more.
func (k *ClockKeeper) Run(ctx context.Context, interval time.Duration) {
	for k.Sleep(ctx, interval) == nil {
		if err := k.Check(ctx); err != nil && ctx.Err() == nil {
			k.Log.Warn("keep the clock on the RTC", "err", err)
		}
	}
}

// CalibrationDelay is how long after Setup the agent measures the RTC's
// phase: the measurement polls the RTC every rtcTickPoll for up to a
// second, and under TCG the container's start, which follows Setup within
// a second, needs the one vCPU more (a wall clock set from the host a
// second earlier has not drifted in between).
const CalibrationDelay = time.Second

// CalibrateAfter is Calibrate after delay; Check changes nothing until
// then.
func (k *ClockKeeper) CalibrateAfter(ctx context.Context, delay time.Duration) error {
	k.mu.Lock()
	k.pending = true
	k.mu.Unlock()
	if err := k.Sleep(ctx, delay); err != nil {
		k.mu.Lock()
		k.pending = false
		k.mu.Unlock()
		return err
	}
	return k.Calibrate(ctx)
}

// Calibrate measures the RTC's phase against the wall clock, which the
// caller has just set to the host's time.
func (k *ClockKeeper) Calibrate(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	defer func() { k.pending = false }()
	rtc, err := k.ReadRTC()
	if err != nil {
		return fmt.Errorf("read RTC: %w", err)
	}
	tick, err := k.nextTick(ctx, rtc)
	if err != nil {
		return err
	}
	k.phase = k.Now().Sub(tick)
	k.Log.Info("RTC phase measured", "phase", k.phase.Round(time.Millisecond))
	return nil
}

// Check steps the clock to the RTC if it is certainly outside the RTC's
// second (shifted by the phase).
func (k *ClockKeeper) Check(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending {
		return nil
	}
	before := k.Now()
	rtc, err := k.ReadRTC()
	after := k.Now()
	if err != nil {
		return fmt.Errorf("read RTC: %w", err)
	}
	rtc = rtc.Add(k.phase)
	// When the RTC was read, the host's time was in [rtc, rtc+1s) and the
	// clock in [before, after]: only a clock outside that window is wrong
	// for certain, whatever the timing of the two reads.
	if !after.Before(rtc) && before.Before(rtc.Add(time.Second)) {
		return nil
	}
	tick, err := k.nextTick(ctx, rtc.Add(-k.phase))
	if err != nil {
		return err
	}
	tick = tick.Add(k.phase)
	if err := k.Set(tick); err != nil {
		return fmt.Errorf("set the clock to the RTC: %w", err)
	}
	k.Log.Info("clock set from the RTC", "was", before.UTC().Format(time.RFC3339Nano), "now", tick.UTC().Format(time.RFC3339Nano),
		"off", before.Sub(rtc).Round(time.Millisecond))
	return nil
}

// nextTick polls the RTC until its second changes and returns the time
// at that moment: the new second plus half a poll.
func (k *ClockKeeper) nextTick(ctx context.Context, from time.Time) (time.Time, error) {
	// Two seconds at most: the RTC advances one per second.
	for range int(2*time.Second/rtcTickPoll) + 1 {
		t, err := k.ReadRTC()
		if err != nil {
			return time.Time{}, fmt.Errorf("read RTC: %w", err)
		}
		if t.After(from) {
			return t.Add(rtcTickPoll / 2), nil
		}
		if err := k.Sleep(ctx, rtcTickPoll); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("the RTC stayed at %v for 2 s", from)
}
