package ext4

// Byte layouts of ext4's on-disk structures (fs/ext4/ext4.h,
// ext4_extents.h; Documentation/filesystems/ext4/).

// encodeInode fills a 256-byte inode table slot. root is the i_block
// content of extent-mapped inodes; xb is the inode's xattr block, if any.
func encodeInode(b []byte, n *inode, root *[inodeBlockLen]byte, xb *xattrBlock) {
	le.PutUint16(b[0x00:], n.modeType()|n.perm)
	le.PutUint16(b[0x02:], uint16(n.uid))
	size := n.size
	blocks := n.dataBlocks() + uint64(len(n.treeBlocks))
	if n.typ == TypeDir {
		size = n.dataBlocks() * blockSize
	}
	le.PutUint32(b[0x04:], uint32(size))
	le.PutUint32(b[0x6C:], uint32(size>>32))
	le.PutUint32(b[0x08:], n.atime.lo)
	le.PutUint32(b[0x0C:], n.ctime.lo)
	le.PutUint32(b[0x10:], n.mtime.lo)
	le.PutUint16(b[0x18:], uint16(n.gid))
	links := n.links
	if n.typ == TypeDir {
		// dir_nlink: past the 16-bit limit a directory counts 1.
		if links = 2 + n.subdirs; links >= maxLinks {
			links = 1
		}
	}
	le.PutUint16(b[0x1A:], uint16(links))
	if xb != nil {
		blocks++
		le.PutUint32(b[0x68:], uint32(xb.block))
	}
	// i_blocks counts 512-byte sectors; huge_file gives it 48 bits.
	sectors := blocks * (blockSize / 512)
	le.PutUint32(b[0x1C:], uint32(sectors))
	le.PutUint16(b[0x74:], uint16(sectors>>32))
	switch {
	case n.usesExtents():
		le.PutUint32(b[0x20:], flagExtents)
		copy(b[0x28:], root[:])
	case n.typ == TypeSymlink:
		copy(b[0x28:], n.target)
	case n.typ == TypeCharDevice || n.typ == TypeBlockDevice:
		// The kernel keeps small numbers in the old 16-bit form in
		// i_block[0] and others in the new form in i_block[1]
		// (ext4_iget / ext4_do_update_inode).
		if n.major < 256 && n.minor < 256 {
			le.PutUint32(b[0x28:], n.major<<8|n.minor)
		} else {
			le.PutUint32(b[0x2C:], n.minor&0xff|n.major<<8|(n.minor&^0xff)<<12)
		}
	}
	le.PutUint16(b[0x78:], uint16(n.uid>>16))
	le.PutUint16(b[0x7A:], uint16(n.gid>>16))
	le.PutUint16(b[0x80:], extraIsize)
	le.PutUint32(b[0x84:], n.ctime.extra)
	le.PutUint32(b[0x88:], n.mtime.extra)
	le.PutUint32(b[0x8C:], n.atime.extra)
	le.PutUint32(b[0x90:], n.ctime.lo) // i_crtime: creation is the change time
	le.PutUint32(b[0x94:], n.ctime.extra)
	if n.xattrsInInode > 0 {
		region := b[goodOldInode+extraIsize : inodeSize]
		le.PutUint32(region, xattrMagic)
		encodeXattrs(region, 4, 4, n.xattrs[:n.xattrsInInode])
	}
}

// extentTree encodes n's extents: the i_block root and, for more than four
// extents, full tree blocks (bottom level first, into n.treeBlocks' order).
func extentTree(n *inode, write func(data []byte, block uint64) error) ([inodeBlockLen]byte, error) {
	type entry struct {
		logical uint32
		raw     [12]byte
	}
	level := make([]entry, len(n.extents))
	for i, x := range n.extents {
		e := &level[i]
		e.logical = x.logical
		le.PutUint32(e.raw[0:], x.logical)
		le.PutUint16(e.raw[4:], x.len)
		le.PutUint16(e.raw[6:], 0) // ee_start_hi: block numbers fit in 32 bits
		le.PutUint32(e.raw[8:], x.start)
	}
	depth, used := 0, 0
	var blk [blockSize]byte
	for len(level) > extentsInInode {
		var up []entry
		for i := 0; i < len(level); i += extentsPerBlock {
			chunk := level[i:min(i+extentsPerBlock, len(level))]
			clear(blk[:])
			putExtentHeader(blk[:], len(chunk), extentsPerBlock, depth)
			for j, e := range chunk {
				copy(blk[12+12*j:], e.raw[:])
			}
			at := n.treeBlocks[used]
			used++
			if err := write(blk[:], at); err != nil {
				return [inodeBlockLen]byte{}, err
			}
			var idx entry
			idx.logical = chunk[0].logical
			le.PutUint32(idx.raw[0:], chunk[0].logical)
			le.PutUint32(idx.raw[4:], uint32(at)) // ei_leaf_lo
			up = append(up, idx)
		}
		level = up
		depth++
	}
	var root [inodeBlockLen]byte
	putExtentHeader(root[:], len(level), extentsInInode, depth)
	for j, e := range level {
		copy(root[12+12*j:], e.raw[:])
	}
	return root, nil
}

func putExtentHeader(b []byte, entries, maxEntries, depth int) {
	le.PutUint16(b[0:], extentMagic)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(maxEntries))
	le.PutUint16(b[6:], uint16(depth))
}

// dirWriter packs ext4_dir_entry_2 records into blocks: inode (4), rec_len
// (2), name_len (1), file_type (1), name padded to 4 bytes. The last record
// of a block stretches to its end.
type dirWriter struct {
	buf  []byte // all the directory's blocks
	off  int    // next record's offset in the current block
	base int    // current block's offset in buf
	last int    // last record's offset in buf, -1 if the block is empty
}

func (d *dirWriter) add(ino uint32, name string, ft uint8) {
	sz := dirEntryLen(len(name))
	if d.off+sz > blockSize {
		d.closeBlock()
	}
	e := d.buf[d.base+d.off:]
	le.PutUint32(e[0:], ino)
	le.PutUint16(e[4:], uint16(sz))
	e[6] = byte(len(name))
	e[7] = ft
	copy(e[8:], name)
	d.last = d.base + d.off
	d.off += sz
}

// closeBlock ends the current block: its last record takes the remaining
// room, or an empty block gets one unused record spanning it.
func (d *dirWriter) closeBlock() {
	if d.last >= 0 {
		le.PutUint16(d.buf[d.last+4:], uint16(blockSize-(d.last-d.base)))
	} else {
		le.PutUint16(d.buf[d.base+4:], blockSize)
	}
	d.base += blockSize
	d.off, d.last = 0, -1
}

// encodeDir lays out directory d into buf (dirBlockCount(d) blocks).
func encodeDir(d *inode, buf []byte) {
	clear(buf)
	dw := dirWriter{buf: buf, last: -1}
	dw.add(d.num, ".", ftDir)
	dw.add(d.parent, "..", ftDir)
	for _, name := range d.names {
		c := d.children[name]
		dw.add(c.num, name, c.fileType())
	}
	for dw.base < len(buf) {
		dw.closeBlock()
	}
}
