package ext4

import (
	"fmt"
	"io"
)

// File is where a Writer puts the image; *os.File satisfies it. The Writer
// truncates it to zero first and relies on never-written ranges reading
// back as zeros (a sparse file).
type File interface {
	io.WriterAt
	Truncate(size int64) error
}

// outputBufferSize batches contiguous writes into large sequential ones; it
// is the same order as the 1 MiB chunks file data is read in.
const outputBufferSize = 2 << 20

// output coalesces writes that continue where the previous one ended,
// which is what the allocator's ascending order produces almost always.
type output struct {
	f   File
	buf []byte // pending bytes for [off, off+len(buf))
	off int64
}

func newOutput(f File) output {
	return output{f: f, buf: make([]byte, 0, outputBufferSize)}
}

func (o *output) writeAt(p []byte, off int64) error {
	if len(o.buf) > 0 && off == o.off+int64(len(o.buf)) && len(o.buf)+len(p) <= cap(o.buf) {
		o.buf = append(o.buf, p...)
		return nil
	}
	if err := o.flush(); err != nil {
		return err
	}
	if len(p) >= cap(o.buf)/2 {
		if _, err := o.f.WriteAt(p, off); err != nil {
			return fmt.Errorf("write %d bytes at %d: %w", len(p), off, err)
		}
		return nil
	}
	o.off = off
	o.buf = append(o.buf, p...)
	return nil
}

// writeBlock writes whole blocks starting at block b.
func (o *output) writeBlock(p []byte, b uint64) error {
	return o.writeAt(p, int64(b)<<blockShift)
}

func (o *output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.f.WriteAt(o.buf, o.off)
	n := len(o.buf)
	o.buf = o.buf[:0]
	if err != nil {
		return fmt.Errorf("write %d bytes at %d: %w", n, o.off, err)
	}
	return nil
}
