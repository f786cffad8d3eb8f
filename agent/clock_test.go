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
	host   time.Time
	offset time.Duration
	sets   int
}

func (f *fakeClocks) keeper() *ClockKeeper {
	return &ClockKeeper{
		ReadRTC: func() (time.Time, error) { return f.host.Truncate(time.Second), nil },
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
