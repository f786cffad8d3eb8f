package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// dataChunkBlocks is how much file data is read per step (1 MiB): large
// enough that syscalls and allocator calls are rare, small enough to stay
// in cache.
const dataChunkBlocks = 256

// maxFileBlocks: extents address 32-bit logical block numbers.
const maxFileBlocks = 1 << 32

var zeroBlock [blockSize]byte

// writeData streams size bytes from r into newly allocated blocks. Blocks
// that are entirely zero are left as holes, as mkfs.ext4 -d does, which
// keeps sparse files sparse.
func (w *Writer) writeData(n *inode, r io.Reader, size int64) error {
	if size == 0 {
		return nil
	}
	if r == nil {
		return fmt.Errorf("no data for %d bytes: %w", size, ErrShortData)
	}
	if uint64(size) > maxFileBlocks*blockSize {
		return fmt.Errorf("file of %d bytes: %w", size, ErrTooLarge)
	}
	if w.buf == nil {
		w.buf = make([]byte, dataChunkBlocks*blockSize)
	}
	var logical uint64
	for remaining := size; remaining > 0; {
		k := min(remaining, int64(len(w.buf)))
		if _, err := io.ReadFull(r, w.buf[:k]); err != nil {
			w.dropData(n)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("read file data at %d of %d: %w", size-remaining, size, ErrShortData)
			}
			return fmt.Errorf("read file data at %d of %d: %w", size-remaining, size, err)
		}
		nb := (uint64(k) + blockSize - 1) / blockSize
		clear(w.buf[k : nb*blockSize])
		if err := w.writeBlocks(n, logical, w.buf[:nb*blockSize]); err != nil {
			w.dropData(n)
			return err
		}
		logical += nb
		remaining -= k
	}
	var extra [1]byte
	if m, _ := io.ReadFull(r, extra[:]); m > 0 {
		w.dropData(n)
		return fmt.Errorf("file of %d bytes: %w", size, ErrLongData)
	}
	n.size = uint64(size)
	return nil
}

// writeBlocks writes the non-zero blocks of buf, which holds the file's
// blocks from logical on.
func (w *Writer) writeBlocks(n *inode, logical uint64, buf []byte) error {
	nb := uint64(len(buf)) / blockSize
	blk := func(i uint64) []byte { return buf[i*blockSize : (i+1)*blockSize] }
	for i := uint64(0); i < nb; {
		if bytes.Equal(blk(i), zeroBlock[:]) {
			i++
			continue
		}
		j := i + 1
		for j < nb && !bytes.Equal(blk(j), zeroBlock[:]) {
			j++
		}
		for i < j {
			s, err := w.alloc.alloc(min(j-i, maxExtentLen), false)
			if err != nil {
				return fmt.Errorf("allocate file blocks: %w", err)
			}
			if err := w.out.writeBlock(buf[i*blockSize:(i+s.len)*blockSize], s.start); err != nil {
				w.err = err
				return err
			}
			n.addExtent(logical+i, s)
			i += s.len
		}
	}
	return nil
}

// dropData gives back the blocks of a file whose data could not be read.
func (w *Writer) dropData(n *inode) {
	for _, x := range n.extents {
		w.alloc.release(span{uint64(x.start), uint64(x.len)})
	}
	n.extents = nil
}
