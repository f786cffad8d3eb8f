package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

func newTestLog(t *testing.T, maxSize int64, maxFiles int) *criLog {
	t.Helper()
	return &criLog{dir: t.TempDir(), name: "main", maxSize: maxSize, maxFiles: maxFiles}
}

func mustWrite(t *testing.T, l *criLog, s logframe.Stream, data string, at time.Time) {
	t.Helper()
	if err := l.write(s, []byte(data), at); err != nil {
		t.Fatal(err)
	}
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// readLog returns the logical content of a log as the node reads it.
func readLog(t *testing.T, dir, name string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := crilog.Read(context.Background(), dir, name, &buf, crilog.Options{Tail: -1}); err != nil {
		t.Fatalf("read log %s: %v", name, err)
	}
	return buf.String()
}

func TestCRIRecords(t *testing.T) {
	l := newTestLog(t, DefaultLogMaxSize, DefaultLogMaxFiles)
	t1, t2, t3 := t0, t0.Add(time.Millisecond), t0.Add(2*time.Millisecond)
	mustWrite(t, l, logframe.Stdout, "hello\nwor", t1)
	mustWrite(t, l, logframe.Stderr, "oops\n\n", t2)
	mustWrite(t, l, logframe.Stdout, "ld\n", t3)
	want := ts(t1) + " stdout F hello\n" +
		ts(t2) + " stderr F oops\n" +
		ts(t2) + " stderr F \n" +
		ts(t3) + " stdout F world\n"
	if got := readFileString(t, l.path()); got != want {
		t.Fatalf("log file:\n%q\nwant:\n%q", got, want)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, l.dir, "main"); got != "hello\noops\n\nworld\n" {
		t.Fatalf("read back %q", got)
	}
}

func TestCRILongLinesSplitAtMaxLineSize(t *testing.T) {
	l := newTestLog(t, DefaultLogMaxSize, DefaultLogMaxFiles)
	long := strings.Repeat("x", 2*maxLineSize+100)
	mustWrite(t, l, logframe.Stdout, long+"\n", t0)
	// Unterminated: whole records go out at once, the rest waits.
	mustWrite(t, l, logframe.Stdout, long, t0)
	tags := func() string {
		var s []string
		for _, line := range strings.Split(strings.TrimSuffix(readFileString(t, l.path()), "\n"), "\n") {
			r, err := crilog.Parse([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Text) > maxLineSize {
				t.Fatalf("record of %d bytes", len(r.Text))
			}
			tag := "F"
			if r.Partial {
				tag = "P"
			}
			s = append(s, fmt.Sprintf("%s%d", tag, len(r.Text)))
		}
		return strings.Join(s, " ")
	}
	if got, want := tags(), "P16384 P16384 F100 P16384 P16384"; got != want {
		t.Fatalf("records %s, want %s", got, want)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	if got, want := tags(), "P16384 P16384 F100 P16384 P16384 F100"; got != want {
		t.Fatalf("records after close %s, want %s", got, want)
	}
	if got := readLog(t, l.dir, "main"); got != long+"\n"+long+"\n" {
		t.Fatalf("read back %d bytes, want %d", len(got), 2*len(long)+2)
	}
}

func TestCRIIdlePartialFlush(t *testing.T) {
	l := newTestLog(t, DefaultLogMaxSize, DefaultLogMaxFiles)
	mustWrite(t, l, logframe.Stdout, "progress 1%", t0)
	if err := l.flushIdle(t0); err != nil { // not older than the cutoff yet
		t.Fatal(err)
	}
	if got := readFileString(t, l.path()); got != "" {
		t.Fatalf("flushed too early: %q", got)
	}
	if err := l.flushIdle(t0.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Second)
	mustWrite(t, l, logframe.Stdout, " 2%\n", t1)
	want := ts(t0) + " stdout P progress 1%\n" + ts(t1) + " stdout F  2%\n"
	if got := readFileString(t, l.path()); got != want {
		t.Fatalf("log file %q, want %q", got, want)
	}
	if got := readLog(t, l.dir, "main"); got != "progress 1% 2%\n" {
		t.Fatalf("read back %q", got)
	}
}

var rotatedName = regexp.MustCompile(`^main\.log\.[0-9]{8}-[0-9]{6}(-[0-9]{3})?$`)

func TestCRIRotation(t *testing.T) {
	const maxSize, maxFiles = minLogMaxSize, 3
	l := newTestLog(t, maxSize, maxFiles)
	var all []string
	for i := range 200 {
		// Half the lines share a second, so rotations collide on the
		// timestamp and need the counter.
		at := t0.Add(time.Duration(i/100) * time.Second)
		line := fmt.Sprintf("line %03d %s", i, strings.Repeat("y", 300))
		all = append(all, line)
		mustWrite(t, l, logframe.Stdout, line+"\n", at)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	var rotated int
	for _, e := range entries {
		info, _ := e.Info()
		if info.Size() > maxSize {
			t.Errorf("%s is %d bytes, above the %d limit", e.Name(), info.Size(), maxSize)
		}
		switch {
		case e.Name() == "main.log":
		case rotatedName.MatchString(e.Name()):
			rotated++
		default:
			t.Errorf("unexpected file %s", e.Name())
		}
	}
	if rotated != maxFiles-1 {
		t.Fatalf("%d rotated files, want %d", rotated, maxFiles-1)
	}
	got := strings.Split(strings.TrimSuffix(readLog(t, l.dir, "main"), "\n"), "\n")
	if len(got) == 0 || len(got) >= len(all) {
		t.Fatalf("kept %d of %d lines; rotation should have dropped the oldest", len(got), len(all))
	}
	// What is kept is the newest lines, in order, none torn.
	if tail := all[len(all)-len(got):]; strings.Join(got, "\n") != strings.Join(tail, "\n") {
		t.Fatalf("kept lines are not the newest %d in order; first kept %.12q", len(got), got[0])
	}
}

func TestValidLogName(t *testing.T) {
	for _, name := range []string{"0", "main", "main-0", "init_1.2"} {
		if err := validLogName(name); err != nil {
			t.Errorf("validLogName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "main/0", "../x", "..", ".", ".hidden", `a\b`, "a..b", "a\nb", strings.Repeat("n", logframe.MaxName+1)} {
		if err := validLogName(name); !errors.Is(err, ErrBadLogName) {
			t.Errorf("validLogName(%q) = %v, want ErrBadLogName", name, err)
		}
	}
}

func TestLogSetRejectsBadNamesAndKeepsGoing(t *testing.T) {
	root := t.TempDir()
	cfg := Config{LogDir: filepath.Join(root, "logs")}
	cfg.setDefaults()
	names := newLogNames()
	if err := names.register("ok"); err != nil {
		t.Fatal(err)
	}
	if err := names.register("../escape"); !errors.Is(err, ErrBadLogName) {
		t.Fatalf("registering a bad name: %v", err)
	}
	s := newLogSet(cfg, nil, names, quietLogger())
	s.write(logframe.Frame{Name: "../escape", Stream: logframe.Stdout, Data: []byte("x\n")}, t0)
	s.write(logframe.Frame{Name: "ok", Stream: logframe.Stdout, Data: []byte("fine\n")}, t0)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if fileExists(filepath.Join(root, "escape.log")) {
		t.Fatal("a name with .. wrote outside the log dir")
	}
	if got := readLog(t, cfg.LogDir, "ok"); got != "fine\n" {
		t.Fatalf("ok.log reads %q", got)
	}
	if s.refused != 1 {
		t.Fatalf("%d frames refused, want the bad name's 1", s.refused)
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// quietLogger is for unit tests of pieces that log.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
