package ext4

import (
	"fmt"
	"strings"
	"time"
)

// extent maps len blocks of a file, starting at file block logical, to
// disk blocks starting at start.
type extent struct {
	logical uint32
	start   uint32
	len     uint16
}

// inode is one file of the tree being built. Directories hold their
// children; other inodes may have several names (hard links).
type inode struct {
	typ                 FileType
	perm                uint16
	uid, gid            uint32
	atime, mtime, ctime timestamp
	size                uint64
	links               uint32 // names pointing here
	extents             []extent
	target              string // a fast symlink's target, kept in the inode
	major, minor        uint32
	xattrs              []xattr
	xattrsInInode       int // xattrs[:xattrsInInode] fit in the inode, the rest go to a block

	children map[string]*inode // directories only
	subdirs  uint32

	// Set by Close.
	num        uint32
	parent     uint32   // directories: the inode number of ".."
	names      []string // directories: children in on-disk order
	minBlocks  uint64   // directories: blocks to allocate even if empty
	treeBlocks []uint64 // extent tree blocks, bottom level first
	xattrBlock uint64
}

func (n *inode) setTimes(e Entry, def time.Time) {
	pick := func(t time.Time) timestamp {
		if t.IsZero() {
			t = def
		}
		return encodeTime(t)
	}
	n.mtime = pick(e.ModTime)
	n.atime = pick(e.AccessTime)
	n.ctime = pick(e.ChangeTime)
}

func (n *inode) setMeta(e Entry, def time.Time) error {
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("mode %#o has bits beyond 07777: %w", e.Mode, ErrInvalid)
	}
	xs, inInode, err := planXattrs(e.Xattrs)
	if err != nil {
		return err
	}
	n.perm = uint16(e.Mode)
	n.uid, n.gid = e.UID, e.GID
	n.setTimes(e, def)
	n.xattrs, n.xattrsInInode = xs, inInode
	return nil
}

// setSymlink stores a target shorter than i_block in the inode (a fast
// symlink, as the kernel does for i_size < 60) and longer ones in a block.
func (w *Writer) setSymlink(n *inode, target string) error {
	switch {
	case target == "":
		return fmt.Errorf("empty symlink target: %w", ErrInvalid)
	case len(target) > maxSymlinkLen:
		return fmt.Errorf("symlink target of %d bytes exceeds %d: %w", len(target), maxSymlinkLen, ErrInvalid)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("symlink target contains NUL: %w", ErrInvalid)
	}
	if len(target) < inodeBlockLen {
		n.target = target
		n.size = uint64(len(target))
		return nil
	}
	return w.writeData(n, strings.NewReader(target), int64(len(target)))
}

func (n *inode) dataBlocks() uint64 {
	var b uint64
	for _, x := range n.extents {
		b += uint64(x.len)
	}
	return b
}

func (n *inode) usesExtents() bool {
	switch n.typ {
	case TypeRegular, TypeDir:
		return true
	case TypeSymlink:
		return n.target == ""
	}
	return false
}

func (n *inode) fileType() uint8 {
	switch n.typ {
	case TypeRegular:
		return ftRegular
	case TypeDir:
		return ftDir
	case TypeSymlink:
		return ftSymlink
	case TypeCharDevice:
		return ftCharDev
	case TypeBlockDevice:
		return ftBlkDev
	case TypeFifo:
		return ftFifo
	case TypeSocket:
		return ftSocket
	}
	return 0
}

func (n *inode) modeType() uint16 {
	switch n.typ {
	case TypeRegular:
		return modeRegular
	case TypeDir:
		return modeDir
	case TypeSymlink:
		return modeSymlink
	case TypeCharDevice:
		return modeCharDev
	case TypeBlockDevice:
		return modeBlkDev
	case TypeFifo:
		return modeFifo
	case TypeSocket:
		return modeSocket
	}
	return 0
}

// addExtent appends a run of blocks to the file, merging it into the last
// extent when both are contiguous on disk and in the file.
func (n *inode) addExtent(logical uint64, s span) {
	if k := len(n.extents); k > 0 {
		last := &n.extents[k-1]
		if uint64(last.logical)+uint64(last.len) == logical &&
			uint64(last.start)+uint64(last.len) == s.start &&
			uint64(last.len)+s.len <= maxExtentLen {
			last.len += uint16(s.len)
			return
		}
	}
	n.extents = append(n.extents, extent{logical: uint32(logical), start: uint32(s.start), len: uint16(s.len)})
}
