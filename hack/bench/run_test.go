//go:build linux

package main

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

// TestParseStepsReadsTheCLILog: the breakdown is read from the lines
// slog's text handler writes for the CLI's phases and the runtime's steps.
func TestParseStepsReadsTheCLILog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("phase", "phase", "open runtime", "took", 12*time.Millisecond, "total", 15*time.Millisecond)
	log.Debug("VM created", "id", "abc", "name", "a name with spaces", "host", 40*time.Millisecond, "boot", 1500*time.Millisecond, "setup", 90*time.Millisecond)
	log.Info("something else", "took", time.Hour)
	log.Debug("VM deleted", "id", "abc", "shim", 30*time.Millisecond, "network", 2*time.Millisecond, "files", time.Millisecond)
	log.Debug("phase", "phase", "remove", "took", 40*time.Millisecond, "total", 2*time.Second)
	got := parseSteps(buf.Bytes())
	want := map[string]time.Duration{
		"open runtime": 12 * time.Millisecond, "remove": 40 * time.Millisecond, "total (in main)": 2 * time.Second,
		"create: host": 40 * time.Millisecond, "create: boot": 1500 * time.Millisecond, "create: setup": 90 * time.Millisecond,
		"remove: shim": 30 * time.Millisecond, "remove: network": 2 * time.Millisecond, "remove: files": time.Millisecond,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 20; i++ {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	if p := percentile(ds, 50); p != 10*time.Second {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(ds, 95); p != 19*time.Second {
		t.Errorf("p95 = %v", p)
	}
	if p := percentile(ds[:1], 95); p != time.Second {
		t.Errorf("p95 of one = %v", p)
	}
}
