package crilog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func rec(sec int, stream, tag, text string) string {
	return fmt.Sprintf("%s %s %s %s\n", t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), stream, tag, text)
}

func writeLog(t *testing.T, dir, file string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir string, opts Options) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Read(context.Background(), dir, "0", &buf, opts); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return buf.String()
}

func TestReadOptions(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, "0.log.20261129-100001", rec(0, "stdout", "F", "one"), rec(1, "stderr", "F", "two"))
	writeLog(t, dir, "0.log",
		rec(2, "stdout", "P", "thr"), rec(3, "stdout", "F", "ee"),
		"garbage line from a torn write\n",
		rec(4, "stdout", "F", "four"), rec(5, "stdout", "F", ""))
	all := "one\ntwo\nthree\nfour\n\n"
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all across rotation", Options{Tail: -1}, all},
		{"tail 2", Options{Tail: 2}, "four\n\n"},
		{"tail joins partials", Options{Tail: 3}, "three\nfour\n\n"},
		{"tail 0", Options{Tail: 0}, ""},
		{"tail more than there is", Options{Tail: 99}, all},
		{"since", Options{Tail: -1, Since: t0.Add(3 * time.Second)}, "ee\nfour\n\n"},
		{"limit bytes", Options{Tail: -1, LimitBytes: 6}, "one\ntw"},
		{"timestamps", Options{Tail: 1, Timestamps: true}, t0.Add(5*time.Second).Format(time.RFC3339Nano) + " \n"},
		{"timestamps once per partial line", Options{Tail: 3, Timestamps: true, LimitBytes: 28},
			t0.Add(2*time.Second).Format(time.RFC3339Nano) + " three\n2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := read(t, dir, tc.opts); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadMissingLog(t *testing.T) {
	err := Read(context.Background(), t.TempDir(), "3", &bytes.Buffer{}, Options{Tail: -1})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestFollowGrowthRotationAndStop(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "0.log")
	writeLog(t, dir, "0.log", rec(0, "stdout", "F", "before"))
	var running atomic.Bool
	running.Store(true)
	var out syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- Read(context.Background(), dir, "0", &out, Options{Tail: -1, Follow: true, Running: running.Load, Poll: 5 * time.Millisecond})
	}()
	waitFor(t, &out, "before\n")
	appendLine(t, live, rec(1, "stdout", "P", "half-"))
	appendLine(t, live, rec(2, "stdout", "F", "line"))
	waitFor(t, &out, "before\nhalf-line\n")
	// Rotate: the old file keeps a last record the follower has not read.
	appendLine(t, live, rec(3, "stdout", "F", "last-in-old"))
	if err := os.Rename(live, live+".20261129-100003"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, dir, "0.log", rec(4, "stderr", "F", "new-file"))
	waitFor(t, &out, "before\nhalf-line\nlast-in-old\nnew-file\n")
	appendLine(t, live, rec(5, "stdout", "F", "final"))
	running.Store(false)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop after the writer stopped")
	}
	if got, want := out.String(), "before\nhalf-line\nlast-in-old\nnew-file\nfinal\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestFollowTailStartsAtEnd(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, "0.log", rec(0, "stdout", "F", "a"), rec(1, "stdout", "F", "b"))
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- Read(ctx, dir, "0", &out, Options{Tail: 1, Follow: true, Running: func() bool { return true }, Poll: 5 * time.Millisecond})
	}()
	waitFor(t, &out, "b\n")
	appendLine(t, filepath.Join(dir, "0.log"), rec(2, "stdout", "F", "c"))
	waitFor(t, &out, "b\nc\n")
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, line := range []string{"", "nots a time stdout F x", t0.Format(time.RFC3339Nano) + " stdin F x", t0.Format(time.RFC3339Nano) + " stdout X x"} {
		if _, err := Parse([]byte(line)); err == nil {
			t.Errorf("Parse(%q) succeeded", line)
		}
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", b.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
