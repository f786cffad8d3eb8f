package shim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

const (
	// maxLineSize is the longest text of one CRI record; longer lines are
	// split into P records. 16 KiB is containerd's default
	// max_container_log_line_size, which the kubelet's runtimes apply.
	maxLineSize = 16 << 10
	// rotatedTimeFormat is the kubelet's suffix for rotated logs
	// (pkg/kubelet/logs: timestampFormat "20060102-150405"). Times are UTC
	// so lexical order stays time order across DST changes.
	rotatedTimeFormat = "20060102-150405"
)

// rotatedSuffix matches what follows "<name>.log." in a rotated file: the
// timestamp, and a counter when several rotations fall in one second.
var rotatedSuffix = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}(-[0-9]{3})?$`)

// ErrBadLogName reports a log name that cannot be a file name in LogDir.
var ErrBadLogName = errors.New("invalid log name")

// validLogName accepts names that stay one plain file inside LogDir.
func validLogName(name string) error {
	switch {
	case name == "" || len(name) > logframe.MaxName:
		return fmt.Errorf("%w %q: length must be 1-%d", ErrBadLogName, name, logframe.MaxName)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%w %q: contains a path separator", ErrBadLogName, name)
	case strings.Contains(name, ".."), strings.HasPrefix(name, "."):
		return fmt.Errorf("%w %q: contains \"..\" or starts with '.'", ErrBadLogName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w %q: contains a control character", ErrBadLogName, name)
		}
	}
	return nil
}

// criLog appends one log's records to <dir>/<name>.log in the kubelet's CRI
// format, `<RFC3339Nano> <stdout|stderr> <F|P> <text>\n`, and rotates it by
// size. It is owned by one goroutine.
type criLog struct {
	dir, name string
	maxSize   int64
	maxFiles  int

	file *os.File
	size int64
	out  []byte // records of the current batch, written with one write(2)
	// pending holds, per stream, the start of a line whose newline has not
	// arrived yet, and when its last byte arrived.
	pending   [3][]byte
	pendingAt [3]time.Time
}

func (l *criLog) path() string { return filepath.Join(l.dir, l.name+".log") }

// write adds a chunk of output that arrived at t.
func (l *criLog) write(stream logframe.Stream, data []byte, t time.Time) error {
	buf := append(l.pending[stream], data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if err := l.line(t, stream, buf[:i], false); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	// An unterminated line longer than a record is emitted in P parts now,
	// as the kubelet's runtimes do; the rest waits for its newline.
	for len(buf) > maxLineSize {
		if err := l.record(t, stream, true, buf[:maxLineSize]); err != nil {
			return err
		}
		buf = buf[maxLineSize:]
	}
	l.pending[stream] = append(l.pending[stream][:0], buf...)
	l.pendingAt[stream] = t
	return l.flush()
}

// flushIdle writes, as a P record, a line that has waited for its newline
// since before cutoff, so output never sits only in memory for long.
func (l *criLog) flushIdle(cutoff time.Time) error {
	for s := range l.pending {
		if len(l.pending[s]) > 0 && l.pendingAt[s].Before(cutoff) {
			if err := l.record(l.pendingAt[s], logframe.Stream(s), true, l.pending[s]); err != nil {
				return err
			}
			l.pending[s] = l.pending[s][:0]
		}
	}
	return l.flush()
}

// close writes unterminated lines as full ones (the stream has ended, as
// containerd does at EOF), syncs and closes the file.
func (l *criLog) close() error {
	var errs []error
	for s := range l.pending {
		if len(l.pending[s]) > 0 {
			errs = append(errs, l.line(l.pendingAt[s], logframe.Stream(s), l.pending[s], false))
			l.pending[s] = nil
		}
	}
	errs = append(errs, l.flush())
	if l.file != nil {
		errs = append(errs, l.file.Sync(), l.file.Close())
		l.file = nil
	}
	return errors.Join(errs...)
}

// line emits one line's text: P parts of maxLineSize, then the last part
// with tag P when partial, else F.
func (l *criLog) line(t time.Time, stream logframe.Stream, text []byte, partial bool) error {
	for len(text) > maxLineSize {
		if err := l.record(t, stream, true, text[:maxLineSize]); err != nil {
			return err
		}
		text = text[maxLineSize:]
	}
	return l.record(t, stream, partial, text)
}

func (l *criLog) record(t time.Time, stream logframe.Stream, partial bool, text []byte) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	n := len(l.out)
	l.out = t.UTC().AppendFormat(l.out, time.RFC3339Nano)
	l.out = append(l.out, ' ')
	l.out = append(l.out, stream.String()...)
	l.out = append(l.out, ' ')
	l.out = append(l.out, tag...)
	l.out = append(l.out, ' ')
	l.out = append(l.out, text...)
	l.out = append(l.out, '\n')
	if err := l.open(); err != nil {
		return err
	}
	// Rotate before a record that would overflow the file; records are
	// never split across files.
	if l.size+int64(len(l.out)) > l.maxSize && l.size+int64(n) > 0 {
		rec := append([]byte(nil), l.out[n:]...)
		l.out = l.out[:n]
		if err := l.flush(); err != nil {
			return err
		}
		if err := l.rotate(t); err != nil {
			return err
		}
		l.out = append(l.out, rec...)
	}
	return nil
}

func (l *criLog) open() error {
	if l.file != nil {
		return nil
	}
	f, err := os.OpenFile(l.path(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.path(), err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat log %s: %w", l.path(), err)
	}
	l.file, l.size = f, info.Size()
	return nil
}

func (l *criLog) flush() error {
	if len(l.out) == 0 {
		return nil
	}
	if err := l.open(); err != nil {
		return err
	}
	n, err := l.file.Write(l.out)
	l.size += int64(n)
	l.out = l.out[:0]
	if err != nil {
		return fmt.Errorf("append to log %s: %w", l.path(), err)
	}
	return nil
}

// rotate renames the live file to <name>.log.<timestamp> (fsynced first, so
// the rotated segment is durable), starts a new live file and removes the
// oldest segments beyond maxFiles.
func (l *criLog) rotate(t time.Time) error {
	if err := l.file.Sync(); err != nil {
		return fmt.Errorf("sync log %s: %w", l.path(), err)
	}
	if err := l.file.Close(); err != nil {
		return fmt.Errorf("close log %s: %w", l.path(), err)
	}
	l.file = nil
	stamp := t.UTC().Format(rotatedTimeFormat)
	dst := l.path() + "." + stamp
	for i := 1; fileExists(dst); i++ {
		if i > 999 {
			return fmt.Errorf("rotate log %s: more than 999 rotations at %s", l.path(), stamp)
		}
		dst = fmt.Sprintf("%s.%s-%03d", l.path(), stamp, i)
	}
	if err := os.Rename(l.path(), dst); err != nil {
		return fmt.Errorf("rotate log %s: %w", l.path(), err)
	}
	if err := l.open(); err != nil {
		return err
	}
	return l.prune()
}

// prune keeps the newest maxFiles-1 rotated segments.
func (l *criLog) prune() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("list logs in %s: %w", l.dir, err)
	}
	prefix := l.name + ".log."
	var rotated []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok && rotatedSuffix.MatchString(rest) {
			rotated = append(rotated, e.Name())
		}
	}
	sort.Strings(rotated)
	var errs []error
	for len(rotated) > l.maxFiles-1 {
		if err := os.Remove(filepath.Join(l.dir, rotated[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove old log: %w", err))
		}
		rotated = rotated[1:]
	}
	return errors.Join(errs...)
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
