package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RTCDevice is the guest's RTC: vz's PL031 or QEMU's CMOS RTC.
const RTCDevice = "/dev/rtc0"

// KeepClock runs a ClockKeeper on the RTC at path until ctx ends. A guest
// without an RTC logs why once and keeps only the time Setup gave it.
func KeepClock(ctx context.Context, path string, set func(time.Time) error, log *slog.Logger) {
	f, err := os.Open(path)
	if err != nil {
		log.Warn("no RTC: the clock will lag after the VM is paused", "err", err)
		return
	}
	defer f.Close()
	k := &ClockKeeper{
		ReadRTC: func() (time.Time, error) { return readRTC(f) },
		Now:     time.Now,
		Set:     set,
		Sleep:   sleepCtx,
		Log:     log,
	}
	k.Run(ctx, ClockCheckInterval)
}

// readRTC reads the RTC's time (RTC_RD_TIME; the RTC keeps UTC).
func readRTC(f *os.File) (time.Time, error) {
	t, err := unix.IoctlGetRTCTime(int(f.Fd()))
	if err != nil {
		return time.Time{}, fmt.Errorf("RTC_RD_TIME: %w", err)
	}
	return time.Date(int(t.Year)+1900, time.Month(t.Mon+1), int(t.Mday), int(t.Hour), int(t.Min), int(t.Sec), 0, time.UTC), nil
}

// SetClock sets the wall clock (settimeofday(2)).
func SetClock(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Settimeofday(&tv)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
