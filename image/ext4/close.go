package ext4

import (
	"crypto/rand"
	"fmt"
	"math/bits"
)

// Close lays out the metadata, writes it and sets the file's final size.
// The Writer cannot be used afterwards.
func (w *Writer) Close() error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if err := w.finish(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Stats describe a finished filesystem.
type Stats struct {
	Blocks, FreeBlocks uint64
	Inodes, FreeInodes uint64
	Groups             uint64
	// Names counts directory entries other than "." and "..", leaving
	// out a lost+found the Writer added itself.
	Names int
}

// Stats reports the geometry of a closed Writer's filesystem.
func (w *Writer) Stats() Stats { return w.stats }

func (w *Writer) finish() error {
	w.addLostFound()
	byNum, dirs := w.number()
	xblocks, xattrBlockOf := sharedXattrBlocks(byNum)
	geo, a, err := w.plan(byNum, dirs, xblocks)
	if err != nil {
		return err
	}
	w.alloc = a
	if err := w.writeDirs(dirs); err != nil {
		return err
	}
	for _, xb := range xblocks {
		le.PutUint32(xb.data[4:], xb.refs)
		if err := w.out.writeBlock(xb.data, xb.block); err != nil {
			return err
		}
	}
	if err := w.writeInodeTables(&geo, byNum, xattrBlockOf); err != nil {
		return err
	}
	stats, err := w.writeBitmaps(&geo, dirs)
	if err != nil {
		return err
	}
	if err := w.writeSuperblocks(&geo, stats); err != nil {
		return err
	}
	if err := w.out.flush(); err != nil {
		return err
	}
	if err := w.f.Truncate(int64(geo.blocks) * blockSize); err != nil {
		return fmt.Errorf("set image size: %w", err)
	}
	return nil
}

func (w *Writer) writeDirs(dirs []*inode) error {
	var buf []byte
	for _, d := range dirs {
		size := int(d.dataBlocks()) * blockSize
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		encodeDir(d, buf)
		var off uint64
		for _, x := range d.extents {
			n := uint64(x.len) * blockSize
			if err := w.out.writeBlock(buf[off:off+n], uint64(x.start)); err != nil {
				return err
			}
			off += n
		}
	}
	return nil
}

// writeInodeTables writes every used inode (and any extent-tree blocks on
// the way); the unused rest of each table stays a hole.
func (w *Writer) writeInodeTables(geo *geometry, byNum []*inode, xattrBlockOf map[*inode]*xattrBlock) error {
	var table []byte
	for g := range geo.groups {
		first := g*geo.ipg + 1
		last := min((g+1)*geo.ipg, geo.lastIno)
		if first > last {
			break
		}
		size := int(last-first+1) * inodeSize
		// Round up to whole blocks so the write stays block-aligned.
		size = (size + blockSize - 1) &^ (blockSize - 1)
		if cap(table) < size {
			table = make([]byte, size)
		}
		table = table[:size]
		clear(table)
		for ino := first; ino <= last; ino++ {
			n := byNum[ino]
			if n == nil {
				continue
			}
			var root [inodeBlockLen]byte
			if n.usesExtents() {
				var err error
				if root, err = extentTree(n, w.out.writeBlock); err != nil {
					return err
				}
			}
			encodeInode(table[(ino-first)*inodeSize:], n, &root, xattrBlockOf[n])
		}
		if err := w.out.writeBlock(table, geo.inodeTable[g]); err != nil {
			return err
		}
	}
	return nil
}

// writeBitmaps derives both bitmaps from the allocator and the inode count
// and returns each group's counters.
func (w *Writer) writeBitmaps(geo *geometry, dirs []*inode) ([]groupStats, error) {
	a := &w.alloc
	bmap := make([]byte, geo.groups*blockSize)
	// Everything below the allocator's mark is in use except what it
	// holds free and the unused tail of each descriptor reservation.
	setBits(bmap, 0, min(a.next, geo.blocks))
	for _, f := range a.free {
		clearBits(bmap, f.start, f.end())
	}
	for g := range geo.groups {
		if hasSuper(g) {
			r := a.reserved(g)
			clearBits(bmap, r.start, min(r.end(), geo.blocks))
			setBits(bmap, r.start, r.start+1+geo.gdt)
		}
	}
	// Bits past the last block are padding and must read as used.
	setBits(bmap, geo.blocks, geo.groups*blocksPerGroup)

	stats := make([]groupStats, geo.groups)
	for _, d := range dirs {
		stats[(uint64(d.num)-1)/geo.ipg].usedDirs++
	}
	ibmap := make([]byte, blockSize)
	for g := range geo.groups {
		gb := bmap[g*blockSize : (g+1)*blockSize]
		stats[g].freeBlocks = blocksPerGroup - uint64(popcount(gb))
		if !isZeroBlock(gb) {
			if err := w.out.writeBlock(gb, geo.blockBitmap[g]); err != nil {
				return nil, err
			}
		}
		clear(ibmap)
		first := g * geo.ipg // inode first+1 is bit 0
		used := min(geo.ipg, max(geo.lastIno, first)-first)
		setBits(ibmap, 0, used)
		setBits(ibmap, geo.ipg, blockSize*8)
		stats[g].freeInodes = geo.ipg - used
		if !isZeroBlock(ibmap) {
			if err := w.out.writeBlock(ibmap, geo.inodeBitmap[g]); err != nil {
				return nil, err
			}
		}
	}
	return stats, nil
}

func (w *Writer) writeSuperblocks(geo *geometry, stats []groupStats) error {
	sb := superblock{
		compat:   compatExtAttr,
		incompat: incompatFiletype | incompatExtents | incompatFlexBG,
		ro: roCompatSparseSuper | roCompatLargeFile | roCompatHugeFile |
			roCompatDirNlink | roCompatExtraIsize,
		label: w.opts.Label,
		uuid:  w.opts.UUID,
		time:  uint32(w.opts.Time.Unix()),
	}
	if w.alloc.limit > 0 {
		sb.compat |= compatDirIndex
		if _, err := rand.Read(sb.hashSeed[:]); err != nil {
			return fmt.Errorf("make directory hash seed: %w", err)
		}
	} else {
		sb.ro |= roCompatReadOnly
	}
	for _, s := range stats {
		sb.freeBlocks += s.freeBlocks
		sb.freeInodes += s.freeInodes
	}
	w.stats = Stats{Blocks: geo.blocks, FreeBlocks: sb.freeBlocks, Inodes: geo.groups * geo.ipg,
		FreeInodes: sb.freeInodes, Groups: geo.groups, Names: w.names}
	gdt := encodeGDT(geo, stats)
	for g := range geo.groups {
		if !hasSuper(g) {
			continue
		}
		super := encodeSuper(geo, &sb, uint16(g))
		start := g * blocksPerGroup
		if g == 0 {
			// The primary copy sits 1024 bytes into block 0.
			if err := w.out.writeAt(super, superOffset); err != nil {
				return err
			}
		} else if err := w.out.writeBlock(super, start); err != nil {
			return err
		}
		if err := w.out.writeBlock(gdt, start+1); err != nil {
			return err
		}
	}
	return nil
}

func popcount(b []byte) int {
	n := 0
	for i := 0; i+8 <= len(b); i += 8 {
		n += bits.OnesCount64(le.Uint64(b[i:]))
	}
	return n
}

// setBits sets bits [from, to) of a little-endian bitmap.
func setBits(b []byte, from, to uint64) {
	for ; from < to && from%8 != 0; from++ {
		b[from/8] |= 1 << (from % 8)
	}
	for ; from+8 <= to; from += 8 {
		b[from/8] = 0xFF
	}
	for ; from < to; from++ {
		b[from/8] |= 1 << (from % 8)
	}
}

// clearBits clears bits [from, to).
func clearBits(b []byte, from, to uint64) {
	for ; from < to && from%8 != 0; from++ {
		b[from/8] &^= 1 << (from % 8)
	}
	for ; from+8 <= to; from += 8 {
		b[from/8] = 0
	}
	for ; from < to; from++ {
		b[from/8] &^= 1 << (from % 8)
	}
}
