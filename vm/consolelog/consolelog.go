// Package consolelog keeps a machine's serial console log bounded. The
// guest's console is one stream that grows for the machine's whole life
// (boot messages, then a few lines per exec probe), so a file the
// hypervisor appended to directly would fill the disk of a node left
// running for a month. Instead the backend hands the hypervisor a pipe and
// copies it here: the live file stays under a size cap and one previous
// file (<path>.1) is kept, so at most twice the cap is on disk per machine.
//
// It is plain Go with no hypervisor imports: vm/qemu uses it on Linux,
// and any backend whose console arrives as a stream can.
package consolelog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// DefaultMaxSize caps the live console log when the spec leaves it 0. A
// boot under the cloud kernel writes about 30 KiB; an exec probe two short
// lines: 1 MiB holds the boot and thousands of probes, and the previous
// file as many again.
const DefaultMaxSize = 1 << 20

// MinMaxSize is the smallest cap accepted: below it a rotation would cut
// the boot messages of one start into pieces.
const MinMaxSize = 4 << 10

// PreviousSuffix names the rotated file: <path>.1.
const PreviousSuffix = ".1"

// File appends to a console log and rotates it by size. It is not safe for
// concurrent use (one copier writes it).
type File struct {
	path string
	max  int64
	f    *os.File
	size int64
}

// Open opens path for appending (an earlier boot of the same machine stays
// in it) under a cap of maxSize bytes (0: DefaultMaxSize).
func Open(path string, maxSize int64) (*File, error) {
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	if maxSize < MinMaxSize {
		return nil, fmt.Errorf("console log %s: cap %d bytes is below %d", path, maxSize, MinMaxSize)
	}
	l := &File{path: path, max: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open console log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat console log: %w", err)
	}
	l.f, l.size = f, info.Size()
	return nil
}

// Write appends p, rotating first whenever p would take the file past the
// cap. It cuts at a line end where one fits, so a line is split only when
// it is longer than the cap itself.
func (l *File) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if l.f == nil {
			if err := l.open(); err != nil {
				return written, err
			}
		}
		room := l.max - l.size
		chunk := p
		if int64(len(chunk)) > room {
			cut := 0
			if room > 0 {
				cut = bytes.LastIndexByte(p[:room], '\n') + 1
			}
			switch {
			case cut > 0:
				chunk = p[:cut]
			case l.size > 0:
				// Nothing that ends a line fits: start a new file.
				if err := l.rotate(); err != nil {
					return written, err
				}
				continue
			default:
				chunk = p[:room] // one line longer than the cap
			}
		}
		n, err := l.f.Write(chunk)
		l.size += int64(n)
		written += n
		if err != nil {
			return written, fmt.Errorf("append to console log: %w", err)
		}
		p = p[n:]
	}
	return written, nil
}

// rotate replaces the previous file with the live one and starts a new one.
func (l *File) rotate() error {
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close console log: %w", err)
	}
	if err := os.Rename(l.path, l.path+PreviousSuffix); err != nil {
		return fmt.Errorf("rotate console log: %w", err)
	}
	return l.open()
}

// Close closes the live file.
func (l *File) Close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Copy writes everything read from r (the hypervisor's end of the console)
// to the log at path until r ends, then closes both. It never stops
// reading before r ends: a console nobody drains blocks the guest's
// writes to it. What cannot be written (a full disk) is dropped and logged
// once per failure streak.
func Copy(r io.ReadCloser, path string, maxSize int64, log *slog.Logger) error {
	defer r.Close()
	l, openErr := Open(path, maxSize)
	if openErr != nil {
		log.Error("console log unavailable; discarding the console", "err", openErr)
		_, err := io.Copy(io.Discard, r)
		return errors.Join(openErr, ignoreClosed(err))
	}
	failing := false
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			_, werr := l.Write(buf[:n])
			switch {
			case werr != nil && !failing:
				failing = true
				log.Error("console log write failed; dropping console output until it works again", "err", werr)
			case werr == nil && failing:
				failing = false
				log.Info("console log writes work again")
			}
		}
		if rerr != nil {
			return errors.Join(ignoreClosed(rerr), l.Close())
		}
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
