package consolelog

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// The live file never passes the cap, one previous file is kept, rotation
// cuts at line ends, and what is on disk is the newest output in order.
func TestRotatesAtLineEndsAndKeepsOnePrevious(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("an earlier boot\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	const maxSize = MinMaxSize
	l, err := Open(path, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	all.WriteString("an earlier boot\n")
	for i := range 1000 {
		line := fmt.Sprintf("[%8d.000000] probe %d ran\n", i, i)
		all.WriteString(line)
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() > maxSize {
			t.Fatalf("after line %d the live file is %d bytes (cap %d), %v", i, fi.Size(), maxSize, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	live, prev := readFile(t, path), readFile(t, path+PreviousSuffix)
	if prev == "" || len(prev) > maxSize {
		t.Fatalf("previous file holds %d bytes, want 1..%d", len(prev), maxSize)
	}
	for name, s := range map[string]string{"live": live, "previous": prev} {
		if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "\n") {
			t.Fatalf("%s file does not start and end at a line boundary: %q…%q", name, s[:20], s[len(s)-20:])
		}
	}
	if !strings.HasSuffix(all.String(), prev+live) {
		t.Fatal("previous+live is not the newest output in order")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("%d files in the directory, want the live and one previous", len(entries))
	}
}

// A line longer than the cap is split, never written past it.
func TestLineLongerThanCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	l, err := Open(path, MinMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("x"), 3*MinMaxSize+10)
	if n, err := l.Write(append([]byte("short\n"), long...)); err != nil || n != len(long)+6 {
		t.Fatalf("write: %d, %v", n, err)
	}
	l.Close()
	live, prev := readFile(t, path), readFile(t, path+PreviousSuffix)
	if len(live) != 10 || len(prev) != MinMaxSize || strings.Trim(prev+live, "x") != "" {
		t.Fatalf("live %d bytes, previous %d bytes", len(live), len(prev))
	}
}

func TestRefusesTinyCap(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "c"), MinMaxSize-1); err == nil {
		t.Fatal("a cap below MinMaxSize was accepted")
	}
}

// Copy drains a stream far larger than the cap and leaves at most the live
// file and one previous, the last line included; when the log cannot be
// written it still drains the stream (a console nobody reads blocks the
// guest).
func TestCopyBoundsAStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "console.log")
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Copy(r, path, 64<<10, slog.New(slog.DiscardHandler)) }()
	var total int
	for i := range 100000 {
		n, err := fmt.Fprintf(w, "line %d of a chatty guest\n", i)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var onDisk int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, _ := e.Info()
		onDisk += fi.Size()
	}
	if len(entries) != 2 || onDisk > 2*64<<10 {
		t.Fatalf("%d files, %d bytes on disk for %d bytes of output; want 2 files, at most %d bytes", len(entries), onDisk, total, 2*64<<10)
	}
	if !strings.HasSuffix(readFile(t, path), "line 99999 of a chatty guest\n") {
		t.Fatal("the last line is not at the end of the live file")
	}

	r2, w2 := io.Pipe()
	go func() {
		done <- Copy(r2, filepath.Join(dir, "missing", "console.log"), 0, slog.New(slog.DiscardHandler))
	}()
	if _, err := w2.Write(bytes.Repeat([]byte("y\n"), 1<<20)); err != nil {
		t.Fatalf("the stream was not drained without a log: %v", err)
	}
	w2.Close()
	if err := <-done; err == nil {
		t.Fatal("Copy into a missing directory reported no error")
	}
}
