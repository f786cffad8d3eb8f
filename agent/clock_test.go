package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// fakeClocks: host time advances only through Sleep; the guest's clock is
// host time plus an offset; the RTC shows host time truncated to seconds.
type fakeClocks struct {
	host     time.Time
	offset   time.Duration
	rtcPhase time.Duration // the RTC's ticks lag the host's seconds by this
	sets     int
}

func (f *fakeClocks) keeper() *ClockKeeper {
	return &ClockKeeper{
		ReadRTC: func() (time.Time, error) { return f.host.Add(-f.rtcPhase).Truncate(time.Second), nil },
		Now:     func() time.Time { return f.host.Add(f.offset) },
		Set:     func(t time.Time) error { f.offset = t.Sub(f.host); f.sets++; return nil },
		Sleep:   func(ctx context.Context, d time.Duration) error { f.host = f.host.Add(d); return nil },
		Log:     slog.New(slog.DiscardHandler),
	}
}

func TestClockKeeperStepsToTheRTC(t *testing.T) {
	start := time.Date(2026, 12, 7, 4, 0, 0, 300e6, time.UTC)
	for _, c := range []struct {
		name    string
		offset  time.Duration
		wantSet bool
	}{
		{"paused 30 s", -30 * time.Second, true},
		{"1.5 s behind", -1500 * time.Millisecond, true},
		{"1.5 s ahead", 1500 * time.Millisecond, true},
		{"in the RTC's second", 200 * time.Millisecond, false},
		{"0.3 s behind, same second", -300 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeClocks{host: start, offset: c.offset}
			if err := f.keeper().Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if (f.sets > 0) != c.wantSet {
				t.Fatalf("set %d times, want set=%v", f.sets, c.wantSet)
			}
			if d := f.offset.Abs(); d >= time.Second {
				t.Fatalf("off by %v after Check", f.offset)
			}
			if c.wantSet && f.offset.Abs() > rtcTickPoll {
				t.Fatalf("stepped clock off by %v, want within one poll (%v)", f.offset, rtcTickPoll)
			}
		})
	}
}

func TestClockKeeperGivesUpOnAStuckRTC(t *testing.T) {
	f := &fakeClocks{host: time.Unix(1e9, 0), offset: -time.Hour}
	k := f.keeper()
	k.ReadRTC = func() (time.Time, error) { return time.Unix(1e9, 0), nil }
	if err := k.Check(context.Background()); err == nil || f.sets != 0 {
		t.Fatalf("stuck RTC: err %v, sets %d", err, f.sets)
	}
}

func TestClockKeeperCalibratesTheRTCsPhase(t *testing.T) {
	// QEMU's RTC ticks 0.7 s after the host's seconds (seen in a run).
	f := &fakeClocks{host: time.Date(2026, 12, 7, 4, 41, 0, 100e6, time.UTC), rtcPhase: 700 * time.Millisecond}
	k := f.keeper()
	// Setup has just set the host's time: calibrate.
	if err := k.Calibrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := (k.phase - f.rtcPhase).Abs(); d > rtcTickPoll {
		t.Fatalf("phase %v, want %v", k.phase, f.rtcPhase)
	}
	// A 30 s pause later, the step lands on the host's time, not 0.7 s
	// behind it.
	f.host = f.host.Add(30 * time.Second)
	f.offset = -30 * time.Second
	if err := k.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.sets != 1 || f.offset.Abs() > rtcTickPoll {
		t.Fatalf("after the step: off by %v (%d sets)", f.offset, f.sets)
	}
	// In step: no more changes.
	for range 5 {
		f.host = f.host.Add(ClockCheckInterval)
		if err := k.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if f.sets != 1 {
		t.Fatalf("%d sets for a clock in step", f.sets)
	}
}

// TestClockKeeperCalibratesAfterTheDelayAndLeavesTheClockAloneMeanwhile:
// Setup has just set the host's time; until the delayed calibration has
// measured the phase, a check must not step the clock on a guessed phase.
func TestClockKeeperCalibratesAfterTheDelayAndLeavesTheClockAloneMeanwhile(t *testing.T) {
	f := &fakeClocks{host: time.Date(2026, 12, 7, 4, 41, 2, 500e6, time.UTC), rtcPhase: 700 * time.Millisecond}
	k := f.keeper()
	var slept []time.Duration
	inDelay := make(chan struct{})
	resume := make(chan struct{})
	sleep := k.Sleep
	k.Sleep = func(ctx context.Context, d time.Duration) error {
		if d == CalibrationDelay {
			slept = append(slept, d)
			close(inDelay)
			<-resume
			return nil
		}
		return sleep(ctx, d)
	}
	done := make(chan error, 1)
	go func() { done <- k.CalibrateAfter(context.Background(), CalibrationDelay) }()
	<-inDelay
	// Host time 2.5 s, the RTC (0.7 s behind its seconds) says 1 s: with
	// the phase still unknown (0) the clock looks outside the RTC's second.
	if err := k.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.sets != 0 {
		t.Fatalf("the clock was stepped %d times before the calibration", f.sets)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(slept) != 1 {
		t.Fatalf("delays %v", slept)
	}
	if d := (k.phase - f.rtcPhase).Abs(); d > rtcTickPoll {
		t.Fatalf("phase %v, want %v", k.phase, f.rtcPhase)
	}
}
