package shim

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

func TestLogEndsWait(t *testing.T) {
	e := newLogEnds()
	got := make(chan LogStatus, 1)
	go func() {
		st, err := e.wait(context.Background(), "0")
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	e.markComplete("1") // another log
	select {
	case st := <-got:
		t.Fatalf("wait for 0 returned %+v when 1 completed", st)
	case <-time.After(50 * time.Millisecond):
	}
	e.markComplete("0")
	if st := <-got; !st.Complete || st.PortClosed || st.Name != "0" {
		t.Fatalf("status %+v", st)
	}
	// Reused for a later process: complete again only at its own end.
	e.markLive("0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.wait(ctx, "0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a live log: %v, want the context's end", err)
	}
	e.closePort()
	if st, err := e.wait(context.Background(), "never-seen"); err != nil || !st.PortClosed || st.Complete {
		t.Fatalf("after the port closed: %+v %v", st, err)
	}
}

func TestLogEndsForgetsTheOldest(t *testing.T) {
	e := newLogEnds()
	e.markComplete("first")
	for i := range maxCompleteLogs {
		e.markComplete(fmt.Sprint(i))
		e.markComplete("reused") // completions of one name count once each
	}
	if len(e.complete) > maxCompleteLogs || len(e.order) > maxCompleteLogs {
		t.Fatalf("%d names, %d completions remembered; bound %d", len(e.complete), len(e.order), maxCompleteLogs)
	}
	if _, ok := e.complete["first"]; ok {
		t.Fatal("the oldest completion is still remembered")
	}
	if _, ok := e.complete["reused"]; !ok {
		t.Fatal("the newest completion was forgotten")
	}
}

func TestLogSetEndFrame(t *testing.T) {
	cfg := Config{LogDir: t.TempDir()}
	cfg.setDefaults()
	ends, names := newLogEnds(), newLogNames()
	for _, n := range []string{"0", "1"} {
		if err := names.register(n); err != nil {
			t.Fatal(err)
		}
	}
	s := newLogSet(cfg, ends, names, quietLogger())
	s.write(logframe.Frame{Name: "0", Stream: logframe.Stdout, Data: []byte("line\nno newline")}, t0)
	path := filepath.Join(cfg.LogDir, "0.log")
	if got := readFileString(t, path); got != ts(t0)+" stdout F line\n" {
		t.Fatalf("before the end: %q", got)
	}
	// The end writes the open line at once, as a full line, and closes
	// the file before the name counts as complete.
	s.write(logframe.Frame{Name: "0", Stream: logframe.End}, t0.Add(time.Millisecond))
	if got, want := readFileString(t, path), ts(t0)+" stdout F line\n"+ts(t0)+" stdout F no newline\n"; got != want {
		t.Fatalf("after the end:\n%q\nwant\n%q", got, want)
	}
	if s.logs["0"] != nil {
		t.Fatal("the ended log's file is still open")
	}
	if _, ok := ends.complete["0"]; !ok {
		t.Fatal("the ended log is not complete")
	}
	// The end releases the name: the guest cannot write it any more ...
	if names.registered("0") {
		t.Fatal("an ended log's name is still registered")
	}
	s.write(logframe.Frame{Name: "0", Stream: logframe.Stderr, Data: []byte("late\n")}, t0.Add(2*time.Millisecond))
	if s.logs["0"] != nil {
		t.Fatal("a frame after the end reopened the log")
	}
	// ... until the host registers it again: a name used again appends
	// to the file and is live again.
	if err := names.register("0"); err != nil {
		t.Fatal(err)
	}
	s.write(logframe.Frame{Name: "0", Stream: logframe.Stderr, Data: []byte("again\n")}, t0.Add(2*time.Millisecond))
	if _, ok := ends.complete["0"]; ok {
		t.Fatal("a log written again still counts as complete")
	}
	if got := readLog(t, cfg.LogDir, "0"); got != "line\nno newline\nagain\n" {
		t.Fatalf("log reads %q", got)
	}
	// An end for a log that wrote nothing completes it without a file;
	// an invalid name is ignored.
	s.write(logframe.Frame{Name: "1", Stream: logframe.End}, t0)
	s.write(logframe.Frame{Name: "../x", Stream: logframe.End}, t0)
	if _, ok := ends.complete["1"]; !ok || fileExists(filepath.Join(cfg.LogDir, "1.log")) {
		t.Fatalf("empty log: complete %v, file exists %v", ok, fileExists(filepath.Join(cfg.LogDir, "1.log")))
	}
	if _, ok := ends.complete["../x"]; ok {
		t.Fatal("an invalid name was recorded")
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
