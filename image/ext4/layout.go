package ext4

import (
	"bytes"
	"fmt"
	"slices"
)

// geometry is where Close puts the filesystem's metadata.
type geometry struct {
	groups      uint64
	ipg         uint64 // inodes per group
	blocks      uint64 // s_blocks_count
	gdt         uint64 // descriptor table blocks actually used
	lastIno     uint64 // inodes 1..lastIno are in use
	blockBitmap []uint64
	inodeBitmap []uint64
	inodeTable  []uint64
}

// xattrBlock is one xattr block, shared by every inode with the same
// block-resident xattrs.
type xattrBlock struct {
	data  []byte
	block uint64
	refs  uint32
}

// inodeRatio: one inode per 16 KiB in a fixed-size filesystem, mke2fs's
// default for filesystems of 512 MiB and more (misc/mke2fs.conf.in).
const inodeRatio = 16384

const lostFound = "lost+found"

// addLostFound gives e2fsck the directory it expects; a fixed-size
// filesystem gets 4 blocks of room like mke2fs makes, so that e2fsck can
// reconnect files without allocating.
func (w *Writer) addLostFound() {
	lf := w.root.children[lostFound]
	if lf == nil {
		lf = &inode{typ: TypeDir, perm: 0o700, children: map[string]*inode{}}
		lf.setTimes(Entry{}, w.defTime)
		w.insert(w.root, lostFound, lf)
		w.names--
	}
	if lf.typ == TypeDir && w.alloc.limit > 0 {
		lf.minBlocks = 4
	}
}

// number assigns inode numbers in depth-first order so that a directory's
// files sit next to it in the inode table: the root is 2, lost+found 11,
// everything else from there on. byNum[i] is inode i (nil for reserved).
func (w *Writer) number() (byNum, dirs []*inode) {
	byNum = make([]*inode, firstIno, firstIno+w.inodes+1)
	w.root.num, w.root.parent = rootIno, rootIno
	byNum[rootIno] = w.root
	if lf := w.root.children[lostFound]; lf != nil && lf.typ == TypeDir {
		lf.num = firstIno
		byNum = append(byNum, lf)
	}
	var visit func(d *inode)
	visit = func(d *inode) {
		dirs = append(dirs, d)
		d.names = make([]string, 0, len(d.children))
		for name := range d.children {
			d.names = append(d.names, name)
		}
		slices.Sort(d.names)
		w.names += len(d.names)
		for _, name := range d.names {
			c := d.children[name]
			if c.num == 0 {
				c.num = uint32(len(byNum))
				byNum = append(byNum, c)
			}
			if c.typ == TypeDir {
				c.parent = d.num
				visit(c)
			}
		}
	}
	visit(w.root)
	return byNum, dirs
}

// sharedXattrBlocks builds the xattr blocks, one per distinct content.
func sharedXattrBlocks(byNum []*inode) (blocks []*xattrBlock, of map[*inode]*xattrBlock) {
	byContent := map[string]*xattrBlock{}
	of = map[*inode]*xattrBlock{}
	for _, n := range byNum {
		if n == nil || n.xattrsInInode == len(n.xattrs) {
			continue
		}
		data := encodeXattrBlock(n.xattrs[n.xattrsInInode:])
		xb := byContent[string(data)]
		if xb == nil {
			xb = &xattrBlock{data: data}
			byContent[string(data)] = xb
			blocks = append(blocks, xb)
		}
		xb.refs++
		of[n] = xb
	}
	return blocks, of
}

// dirBlockCount is how many blocks a linear directory needs: "." and ".."
// then every name, an entry never crossing a block boundary.
func dirBlockCount(d *inode) uint64 {
	blocks, used := uint64(1), dirEntryLen(1)+dirEntryLen(2)
	for _, name := range d.names {
		sz := dirEntryLen(len(name))
		if used+sz > blockSize {
			blocks++
			used = 0
		}
		used += sz
	}
	return max(blocks, d.minBlocks)
}

func dirEntryLen(nameLen int) int { return 8 + align4(nameLen) }

// treeBlockCount is how many extent-tree blocks n extents need with every
// block full but the last of each level: e2fsck offers to rebuild trees
// that could be narrower or shallower (e2fsck/extents.c).
func treeBlockCount(n int) int {
	total := 0
	for n > extentsInInode {
		n = (n + extentsPerBlock - 1) / extentsPerBlock
		total += n
	}
	return total
}

// plan fixes the geometry: how many groups and inodes per group, and where
// every metadata block goes. A compact image grows until its metadata fits
// in the groups it spans.
func (w *Writer) plan(byNum, dirs []*inode, xblocks []*xattrBlock) (geometry, allocator, error) {
	lastIno := uint64(len(byNum) - 1)
	if w.alloc.limit > 0 {
		groups := divRoundUp(w.alloc.limit, blocksPerGroup)
		ipg := max(roundUp16(divRoundUp(w.alloc.limit*blockSize/inodeRatio, groups)), roundUp16(divRoundUp(lastIno, groups)))
		if ipg > blocksPerGroup {
			return geometry{}, allocator{}, fmt.Errorf("%d inodes do not fit in %d groups: %w", lastIno, groups, ErrNoSpace)
		}
		a := w.alloc.clone()
		geo := geometry{groups: groups, ipg: ipg, lastIno: lastIno, blocks: w.alloc.limit}
		err := placeMeta(&a, &geo, byNum, dirs, xblocks)
		return geo, a, err
	}
	groups := max(divRoundUp(w.alloc.next, blocksPerGroup), divRoundUp(lastIno, blocksPerGroup), 1)
	for {
		ipg := roundUp16(divRoundUp(lastIno, groups))
		a := w.alloc.clone()
		geo := geometry{groups: groups, ipg: ipg, lastIno: lastIno}
		if err := placeMeta(&a, &geo, byNum, dirs, xblocks); err != nil {
			return geometry{}, allocator{}, err
		}
		need := max(divRoundUp(a.next, blocksPerGroup), 1)
		if need > groups {
			groups = need
			continue
		}
		geo.blocks = a.next
		if need < groups {
			// Fewer inodes per group made the metadata smaller than
			// the groups it was planned for: keep the last group
			// alive with its superblock copy and one block.
			last := groups - 1
			minEnd := last*blocksPerGroup + 1
			if hasSuper(last) {
				minEnd = a.reserved(last).end() + 1
			}
			geo.blocks = max(geo.blocks, minEnd)
		}
		if geo.blocks > maxBlocks-1 {
			return geometry{}, allocator{}, fmt.Errorf("image of %d blocks: %w", geo.blocks, ErrTooLarge)
		}
		return geo, a, nil
	}
}

func roundUp16(n uint64) uint64 { return max((n+15)&^15, inodesPerBlock) }

// placeMeta allocates directory blocks, xattr blocks, extent-tree blocks,
// bitmaps and inode tables, in the order Close writes them.
func placeMeta(a *allocator, geo *geometry, byNum, dirs []*inode, xblocks []*xattrBlock) error {
	geo.gdt = gdtBlocks(geo.groups)
	if geo.gdt > a.gdtReserve {
		return fmt.Errorf("%d groups need %d descriptor blocks, %d reserved (raise Options.MaxSize): %w",
			geo.groups, geo.gdt, a.gdtReserve, ErrTooLarge)
	}
	for _, d := range dirs {
		d.extents = d.extents[:0]
		var logical uint64
		for nb := dirBlockCount(d); nb > 0; {
			s, err := a.alloc(min(nb, maxExtentLen), true)
			if err != nil {
				return fmt.Errorf("place directory blocks: %w", err)
			}
			d.addExtent(logical, s)
			logical += s.len
			nb -= s.len
		}
	}
	for _, xb := range xblocks {
		s, err := a.alloc(1, false)
		if err != nil {
			return fmt.Errorf("place xattr block: %w", err)
		}
		xb.block = s.start
	}
	for _, n := range byNum {
		if n == nil {
			continue
		}
		n.treeBlocks = n.treeBlocks[:0]
		for range treeBlockCount(len(n.extents)) {
			s, err := a.alloc(1, false)
			if err != nil {
				return fmt.Errorf("place extent tree block: %w", err)
			}
			n.treeBlocks = append(n.treeBlocks, s.start)
		}
	}
	one := func(what string) (uint64, error) {
		s, err := a.alloc(1, false)
		if err != nil {
			return 0, fmt.Errorf("place %s: %w", what, err)
		}
		return s.start, nil
	}
	geo.blockBitmap = make([]uint64, geo.groups)
	geo.inodeBitmap = make([]uint64, geo.groups)
	geo.inodeTable = make([]uint64, geo.groups)
	var err error
	for g := range geo.groups {
		if geo.blockBitmap[g], err = one("block bitmap"); err != nil {
			return err
		}
	}
	for g := range geo.groups {
		if geo.inodeBitmap[g], err = one("inode bitmap"); err != nil {
			return err
		}
	}
	for g := range geo.groups {
		s, err := a.alloc(geo.ipg/inodesPerBlock, true)
		if err != nil {
			return fmt.Errorf("place inode table: %w", err)
		}
		geo.inodeTable[g] = s.start
	}
	return nil
}

// isZeroBlock reports whether a block-sized buffer holds only zeros; such
// blocks are left unwritten (holes in a sparse file read back as zeros).
func isZeroBlock(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
