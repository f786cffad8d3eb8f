package main

import (
	"log/slog"
	"time"
)

// phaseClock logs at debug level how long each step of a command took, so
// `--log-level debug` shows where a `run` spends its time; make bench
// reads these lines for its breakdown of `run --rm`.
type phaseClock struct {
	log         *slog.Logger
	start, last time.Time
}

func newPhaseClock(log *slog.Logger) *phaseClock {
	now := time.Now()
	return &phaseClock{log: log, start: now, last: now}
}

// mark ends the step called name.
func (p *phaseClock) mark(name string) {
	now := time.Now()
	p.log.Debug("phase", "phase", name, "took", now.Sub(p.last), "total", now.Sub(p.start))
	p.last = now
}
