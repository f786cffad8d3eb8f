package image

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestProgressPrinterPlain(t *testing.T) {
	var b bytes.Buffer
	p := NewProgressPrinter(&b, false)
	p.Start("example.com/app:1")
	p.Update(Progress{Digest: "sha256:aaaaaaaaaaaaaaaaaaaa", Size: 3 << 20, Cached: true, Done: true, Written: 3 << 20})
	p.Update(Progress{Digest: "sha256:bbbbbbbbbbbbbbbbbbbb", Size: 2 << 20})
	p.Update(Progress{Digest: "sha256:bbbbbbbbbbbbbbbbbbbb", Size: 2 << 20, Written: 1 << 20})
	p.Update(Progress{Digest: "sha256:bbbbbbbbbbbbbbbbbbbb", Size: 2 << 20, Written: 2 << 20, Done: true})
	p.Finish(&Image{Digest: "sha256:cccc", Size: 5 << 20}, nil)
	got := b.String()
	want := []string{
		"Pulling example.com/app:1",
		"aaaaaaaaaaaa: Already exists",
		"bbbbbbbbbbbb: Downloading (2.0 MiB)",
		"bbbbbbbbbbbb: Pull complete (2.0 MiB)",
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 5 || strings.Join(lines[:4], "\n") != strings.Join(want, "\n") ||
		!strings.HasPrefix(lines[4], "Pulled example.com/app:1: sha256:cccc (5.0 MiB in ") {
		t.Fatalf("plain progress:\n%s", got)
	}
	if strings.Contains(got, "\x1b") {
		t.Fatalf("escape sequences in plain output: %q", got)
	}
}

func TestProgressPrinterTerminal(t *testing.T) {
	var b bytes.Buffer
	p := NewProgressPrinter(&b, true)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { return clock }
	p.Start("r")
	p.Update(Progress{Digest: "sha256:aaaaaaaaaaaaaaaa", Size: 100})
	clock = clock.Add(time.Second)
	p.Update(Progress{Digest: "sha256:bbbbbbbbbbbbbbbb", Size: 100, Written: 50})
	before := b.Len()
	p.Update(Progress{Digest: "sha256:bbbbbbbbbbbbbbbb", Size: 100, Written: 60}) // within redrawEvery: not drawn
	if b.Len() != before {
		t.Errorf("redraw not throttled: %q", b.String()[before:])
	}
	p.Update(Progress{Digest: "sha256:aaaaaaaaaaaaaaaa", Size: 100, Written: 100, Done: true})
	p.Finish(nil, errors.New("boom"))
	got := b.String()
	// Each redraw after the first moves the cursor up over the lines it drew.
	if n := strings.Count(got, "\x1b[1A"); n != 1 {
		t.Errorf("cursor-up over 1 line: %d times in %q", n, got)
	}
	if n := strings.Count(got, "\x1b[2A"); n != 2 {
		t.Errorf("cursor-up over 2 lines: %d times in %q", n, got)
	}
	if !strings.Contains(got, "bbbbbbbbbbbb: Downloading [===============>              ] 50 B/100 B") {
		t.Errorf("no half-full bar in %q", got)
	}
	if !strings.HasSuffix(got, "aaaaaaaaaaaa: Pull complete 100 B\n\x1b[2Kbbbbbbbbbbbb: Downloading [==================>           ] 60 B/100 B\n") {
		t.Errorf("final frame: %q", got)
	}
	if strings.Contains(got, "Pulled") {
		t.Errorf("a failed pull reported as pulled: %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
