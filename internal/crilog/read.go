// Package crilog reads container logs in the kubelet's CRI format, the
// format the per-VM shim writes (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`,
// one record per line, P marking a partial line continued by the next record)
// into <dir>/<name>.log, rotating older segments to <name>.log.<timestamp>.
// Both `kubectl logs` (through the provider) and `vk-applevm logs` use it.
package crilog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Options select and shape the output, with the semantics of the kubelet's
// log endpoint.
type Options struct {
	// Tail keeps only the last Tail lines; negative means all.
	Tail int
	// Since drops records older than this time (zero: keep all).
	Since time.Time
	// Timestamps prefixes every line with its RFC3339Nano time.
	Timestamps bool
	// LimitBytes stops after this many bytes of output (0: no limit).
	LimitBytes int64
	// Follow keeps reading as the log grows until Running reports false and
	// everything written has been read, or the context ends.
	Follow bool
	// Running tells Follow whether the writer may still append. Nil means
	// not running.
	Running func() bool
	// Poll is the follow polling interval (default 200 ms).
	Poll time.Duration
}

// Record is one parsed log line.
type Record struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    []byte
}

// ErrBadRecord is wrapped by Parse for a line not in CRI format.
var ErrBadRecord = errors.New("not a CRI log record")

// Parse decodes one line (without its newline).
func Parse(line []byte) (Record, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("%w: %q", ErrBadRecord, truncate(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Record{}, fmt.Errorf("%w: timestamp %q", ErrBadRecord, ts)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return Record{}, fmt.Errorf("%w: stream in %q", ErrBadRecord, truncate(line))
	}
	tag, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		// An empty full line is written as "<ts> stdout F" by some writers.
		tag, text = rest, nil
	}
	var partial bool
	switch string(tag) {
	case "F":
	case "P":
		partial = true
	default:
		return Record{}, fmt.Errorf("%w: tag %q", ErrBadRecord, tag)
	}
	return Record{Time: t, Stream: string(stream), Partial: partial, Text: text}, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// Segments returns the files holding the log called name in dir, oldest
// first: the rotated segments ordered by their timestamp suffix, then the
// live file.
func Segments(dir, name string) ([]string, error) {
	base := name + ".log"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list log segments in %s: %w", dir, err)
	}
	var rotated []string
	live := false
	for _, e := range entries {
		switch n := e.Name(); {
		case n == base:
			live = true
		case strings.HasPrefix(n, base+".") && !strings.HasSuffix(n, ".tmp"):
			rotated = append(rotated, n)
		}
	}
	// Suffixes are YYYYMMDD-hhmmss (optionally with a counter), so
	// lexical order is time order.
	sort.Strings(rotated)
	var out []string
	for _, n := range rotated {
		out = append(out, filepath.Join(dir, n))
	}
	if live {
		out = append(out, filepath.Join(dir, base))
	}
	return out, nil
}

// Read writes the log called name in dir to w according to opts.
func Read(ctx context.Context, dir, name string, w io.Writer, opts Options) error {
	segs, err := Segments(dir, name)
	if err != nil {
		return err
	}
	if len(segs) == 0 && !opts.Follow {
		return fmt.Errorf("no log %s in %s: %w", name, dir, os.ErrNotExist)
	}
	f := &formatter{opts: opts, w: &limitWriter{w: w, left: opts.LimitBytes}}
	live := &tailer{path: filepath.Join(dir, name+".log")}
	defer live.close()
	if len(segs) > 0 && segs[len(segs)-1] == live.path {
		segs = segs[:len(segs)-1]
		if err := live.open(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("open log %s: %w", live.path, err)
		}
	}

	emit := f.writeSince
	var tail []Record
	if opts.Tail >= 0 {
		// Keep only the last Tail lines of all segments in memory.
		emit = func(r Record) error {
			if !r.Time.Before(opts.Since) {
				tail = keepLastLines(append(tail, r), opts.Tail)
			}
			return nil
		}
	}
	for _, seg := range segs {
		if err := scanFile(seg, emit); err != nil {
			return done(err)
		}
	}
	if err := live.drain(emit); err != nil {
		return done(err)
	}
	for _, r := range tail {
		if err := f.write(r); err != nil {
			return done(err)
		}
	}
	if !opts.Follow {
		return nil
	}
	return done(live.follow(ctx, f.writeSince, opts))
}

// keepLastLines trims records to the last n logical lines; the records of a
// partial line belong to the line their final record ends.
func keepLastLines(recs []Record, n int) []Record {
	full := 0
	for i := len(recs) - 1; i >= 0; i-- {
		if !recs[i].Partial {
			if full == n {
				return append(recs[:0], recs[i+1:]...)
			}
			full++
		}
	}
	return recs
}

func done(err error) error {
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

// tailer reads the live log file incrementally and notices rotation.
type tailer struct {
	path    string
	file    *os.File
	info    os.FileInfo
	offset  int64
	pending []byte
}

func (t *tailer) open() error {
	file, err := os.Open(t.path)
	if err != nil {
		return err
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return err
	}
	t.close()
	t.file, t.info, t.offset, t.pending = file, info, 0, nil
	return nil
}

func (t *tailer) close() {
	if t.file != nil {
		t.file.Close()
		t.file = nil
	}
}

func (t *tailer) drain(fn func(Record) error) error {
	if t.file == nil {
		return nil
	}
	var err error
	t.offset, t.pending, err = drain(t.file, t.offset, t.pending, fn)
	return err
}

// follow reads what is appended until the writer stops or ctx ends; when the
// file is rotated away, the rest of the old file and then the new one are read.
func (t *tailer) follow(ctx context.Context, fn func(Record) error, opts Options) error {
	poll := opts.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	for {
		// Sample the writer's state before draining so output written
		// just before it stopped is still read.
		running := opts.Running != nil && opts.Running()
		if t.file == nil {
			if err := t.open(); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("follow log %s: %w", t.path, err)
			}
		}
		if err := t.drain(fn); err != nil {
			return err
		}
		if info, err := os.Stat(t.path); err == nil && t.file != nil && !os.SameFile(info, t.info) {
			if err := t.drain(fn); err != nil {
				return err
			}
			if err := t.open(); err != nil {
				return fmt.Errorf("follow rotated log %s: %w", t.path, err)
			}
			continue
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// drain reads complete lines from file starting at offset; an incomplete
// last line is returned for the next round.
func drain(file *os.File, offset int64, pending []byte, fn func(Record) error) (int64, []byte, error) {
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return offset, pending, err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := file.Read(buf)
		if n > 0 {
			offset += int64(n)
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				line := pending[:i]
				if r, perr := Parse(line); perr == nil {
					if err := fn(r); err != nil {
						return offset, nil, err
					}
				}
				pending = pending[i+1:]
			}
			pending = append([]byte(nil), pending...)
		}
		if err == io.EOF {
			return offset, pending, nil
		}
		if err != nil {
			return offset, pending, err
		}
	}
}

func scanFile(path string, fn func(Record) error) error {
	file, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // rotated away between listing and opening
		}
		return fmt.Errorf("open log segment: %w", err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		r, err := Parse(sc.Bytes())
		if err != nil {
			continue // a torn last line of a crashed writer
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read log segment %s: %w", path, err)
	}
	return nil
}

type formatter struct {
	opts     Options
	w        io.Writer
	midLine  bool
	lineBuff []byte
}

func (f *formatter) writeSince(r Record) error {
	if r.Time.Before(f.opts.Since) {
		return nil
	}
	return f.write(r)
}

func (f *formatter) write(r Record) error {
	b := f.lineBuff[:0]
	if f.opts.Timestamps && !f.midLine {
		b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
	}
	b = append(b, r.Text...)
	if !r.Partial {
		b = append(b, '\n')
	}
	f.midLine = r.Partial
	f.lineBuff = b
	_, err := f.w.Write(b)
	return err
}

var errLimit = errors.New("log byte limit reached")

type limitWriter struct {
	w    io.Writer
	left int64 // 0 = unlimited
	hit  bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.hit {
		return 0, errLimit
	}
	if l.left > 0 {
		if int64(len(p)) >= l.left {
			p = p[:l.left]
			l.hit = true
		} else {
			l.left -= int64(len(p))
		}
	}
	n, err := l.w.Write(p)
	if err == nil && l.hit {
		return n, errLimit
	}
	return n, err
}
