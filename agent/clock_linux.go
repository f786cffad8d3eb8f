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

// NewRTCClock returns a ClockKeeper on the RTC at path, which Run keeps
// open. A guest without an RTC gets an error saying so.
func NewRTCClock(path string, set func(time.Time) error, log *slog.Logger) (*ClockKeeper, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the RTC: %w", err)
	}
	return &ClockKeeper{
		ReadRTC: func() (time.Time, error) { return readRTC(f) },
		Now:     time.Now,
		Set:     set,
		Sleep:   sleepCtx,
		Log:     log,
	}, nil
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
