package shim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// partialFlushDelay is how long an unterminated line waits in memory for
// its newline before it is written as a P record. Long enough that lines
// written in a few chunks stay one record, short enough that a crash loses
// little.
const partialFlushDelay = 250 * time.Millisecond

// maxFailingNames bounds the names remembered as failing.
const maxFailingNames = 256

// logSet routes frames to one criLog per registered name. It is owned by
// the pump goroutine.
type logSet struct {
	dir      string // empty: frames are dropped
	maxSize  int64
	maxFiles int
	log      *slog.Logger
	logs     map[string]*criLog // the logs being written
	ends     *logEnds
	names    *logNames // the names the host registered; others are refused
	// refused counts frames dropped for a name nobody registered.
	refused uint64
	// failing remembers names whose last write failed or that are invalid,
	// so a broken disk or a misbehaving guest logs once, not per frame.
	failing map[string]bool
	dirMade bool
}

func newLogSet(cfg Config, ends *logEnds, names *logNames, log *slog.Logger) *logSet {
	return &logSet{
		dir: cfg.LogDir, maxSize: cfg.LogMaxSize, maxFiles: cfg.LogMaxFiles, log: log,
		logs: map[string]*criLog{}, ends: ends, names: names, failing: map[string]bool{},
	}
}

func (s *logSet) write(f logframe.Frame, t time.Time) {
	if f.Stream == logframe.End {
		s.end(f.Name)
		return
	}
	if s.dir == "" {
		return
	}
	if !s.names.registered(f.Name) {
		s.refuse(f.Name)
		return
	}
	l, err := s.get(f.Name)
	if err == nil {
		err = l.write(f.Stream, f.Data, t)
	}
	s.note(f.Name, err)
}

// end completes a log: the guest has sent all of it. The unterminated last
// line is written at once (as a full line, as containerd does at EOF), the
// file synced and closed, and only then is the name reported complete, so
// a node that waits for it (WaitLog) finds every byte on disk.
func (s *logSet) end(name string) {
	if !s.names.registered(name) {
		s.refuse(name)
		return
	}
	if l := s.logs[name]; l != nil {
		delete(s.logs, name)
		s.note(name, l.close())
	}
	s.names.release(name)
	if s.ends != nil {
		s.ends.markComplete(name)
	}
}

// refuse drops a frame for a name the host did not register: a guest
// naming logs at will must cost neither files nor descriptors nor a line
// of shim.log per frame (logged at the 1st, 10th, 100th … refusal).
func (s *logSet) refuse(name string) {
	s.refused++
	if n := s.refused; n == 1 || isPowerOf10(n) {
		s.log.Warn("dropping log frames for a name the host did not register", "log", name, "refusedFrames", n)
	}
}

func isPowerOf10(n uint64) bool {
	for n >= 10 && n%10 == 0 {
		n /= 10
	}
	return n == 1
}

func (s *logSet) get(name string) (*criLog, error) {
	if l := s.logs[name]; l != nil {
		return l, nil
	}
	if err := validLogName(name); err != nil {
		return nil, err
	}
	if s.ends != nil {
		s.ends.markLive(name)
	}
	if !s.dirMade {
		if err := os.MkdirAll(s.dir, 0o750); err != nil {
			return nil, fmt.Errorf("create log dir: %w", err)
		}
		s.dirMade = true
	}
	l := &criLog{dir: s.dir, name: name, maxSize: s.maxSize, maxFiles: s.maxFiles}
	s.logs[name] = l
	return l, nil
}

func (s *logSet) note(name string, err error) {
	switch {
	case err != nil && !s.failing[name]:
		if len(s.failing) >= maxFailingNames {
			return // a guest spraying bad names must not grow this map
		}
		s.failing[name] = true
		s.log.Error("container log write failed; dropping output until it works again", "log", name, "err", err)
	case err == nil && s.failing[name]:
		delete(s.failing, name)
		s.log.Info("container log writes work again", "log", name)
	}
}

func (s *logSet) flushIdle(now time.Time) {
	for name, l := range s.logs {
		s.note(name, l.flushIdle(now.Add(-partialFlushDelay)))
	}
}

func (s *logSet) close() error {
	var errs []error
	for _, l := range s.logs {
		errs = append(errs, l.close())
	}
	return errors.Join(errs...)
}

type arrival struct {
	frame logframe.Frame
	at    time.Time
}

// pumpLogs reads frames from the log port until it ends, timestamping each
// on arrival, and closes the logs (flushing and syncing them) at the end;
// then it reports the port closed to logs' waiters.
func pumpLogs(port io.Reader, logs *logSet, log *slog.Logger) {
	frames := make(chan arrival, 64)
	go func() {
		defer close(frames)
		r := logframe.NewReader(port)
		for {
			f, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
					log.Warn("log port ended", "err", err)
				}
				return
			}
			frames <- arrival{frame: f, at: time.Now()}
		}
	}()
	tick := time.NewTicker(partialFlushDelay / 2)
	defer tick.Stop()
	for {
		select {
		case a, ok := <-frames:
			if !ok {
				if err := logs.close(); err != nil {
					log.Error("close container logs", "err", err)
				}
				if logs.ends != nil {
					logs.ends.closePort()
				}
				return
			}
			logs.write(a.frame, a.at)
		case now := <-tick.C:
			logs.flushIdle(now)
		}
	}
}
