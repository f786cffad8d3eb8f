package ext4

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// Options shape the filesystem a Writer makes.
type Options struct {
	// Size, when set, makes a writable filesystem of exactly this many
	// bytes (rounded down to 4 KiB) with free blocks and inodes to spare,
	// as mkfs would. Zero makes a compact read-only image sized to its
	// content.
	Size int64
	// MaxSize bounds a compact image; it decides how much room the group
	// descriptor table keeps at the start of the image and after each
	// superblock backup. Default 1 TiB.
	MaxSize int64
	// Label is the volume name (at most 16 bytes).
	Label string
	// UUID identifies the filesystem; zero picks a random one.
	UUID [16]byte
	// Time stamps the superblock and is the default for entry times;
	// zero means now.
	Time time.Time
}

const defaultMaxSize = 1 << 40

// Writer builds an ext4 filesystem in a File. It is not safe for
// concurrent use.
type Writer struct {
	f       File
	opts    Options
	out     output
	alloc   allocator
	root    *inode
	defTime time.Time
	buf     []byte // file data staging, whole blocks
	closed  bool
	err     error // sticky: a failed write leaves the image unusable
	inodes  int   // live inodes other than the root
	stats   Stats
	names   int // counted by Close
}

// NewWriter starts a filesystem in f, which it truncates to zero.
func NewWriter(f File, opts Options) (*Writer, error) {
	if len(opts.Label) > 16 {
		return nil, fmt.Errorf("label %q longer than 16 bytes: %w", opts.Label, ErrInvalid)
	}
	if opts.Size < 0 || opts.MaxSize < 0 {
		return nil, fmt.Errorf("negative size: %w", ErrInvalid)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = defaultMaxSize
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	if opts.UUID == [16]byte{} {
		if _, err := rand.Read(opts.UUID[:]); err != nil {
			return nil, fmt.Errorf("make filesystem uuid: %w", err)
		}
		opts.UUID[6] = opts.UUID[6]&0x0f | 0x40 // RFC 4122 version 4
		opts.UUID[8] = opts.UUID[8]&0x3f | 0x80
	}
	var gdtReserve, limit uint64
	if opts.Size > 0 {
		var err error
		if limit, gdtReserve, err = fixedGeometry(opts.Size); err != nil {
			return nil, err
		}
	} else {
		maxBlk := min(divRoundUp(uint64(opts.MaxSize), blockSize), maxBlocks-1)
		gdtReserve = gdtBlocks(divRoundUp(maxBlk, blocksPerGroup))
	}
	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("truncate image: %w", err)
	}
	w := &Writer{
		f:       f,
		opts:    opts,
		out:     newOutput(f),
		alloc:   newAllocator(gdtReserve, limit),
		defTime: opts.Time,
	}
	w.root = &inode{typ: TypeDir, perm: 0o755, children: map[string]*inode{}, links: 1}
	w.root.setTimes(Entry{}, w.defTime)
	return w, nil
}

// fixedGeometry sizes a filesystem of the given bytes: its block count
// and descriptor table. Like mke2fs, it drops a last group too small to
// hold more than its own metadata.
func fixedGeometry(size int64) (blocks, gdt uint64, err error) {
	blocks = uint64(size) >> blockShift
	if blocks >= maxBlocks {
		return 0, 0, fmt.Errorf("size %d exceeds 16 TiB: %w", size, ErrTooLarge)
	}
	groups := divRoundUp(blocks, blocksPerGroup)
	gdt = gdtBlocks(groups)
	// Superblock, descriptors, two bitmaps, an inode table block, and
	// mke2fs's margin of 50 blocks (ext2fs_initialize).
	if last := blocks - (groups-1)*blocksPerGroup; groups > 1 && last < 1+gdt+2+1+50 {
		blocks = (groups - 1) * blocksPerGroup
	}
	// Root, lost+found and the metadata of one group must fit.
	if blocks < 1+gdt+2+1+1+4+16 {
		return 0, 0, fmt.Errorf("size %d is too small for a filesystem: %w", size, ErrNoSpace)
	}
	return blocks, gdt, nil
}

// Add puts e into the filesystem. The parent directory must exist. An
// existing entry at the same path is replaced, except that a directory
// added over a directory only takes the new metadata and keeps its
// children. data supplies a regular file's Size bytes and is read to that
// length; it is unused for other types.
func (w *Writer) Add(e Entry, data io.Reader) error {
	if err := w.usable(); err != nil {
		return err
	}
	names, err := splitPath(e.Path)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		if e.Type != TypeDir {
			return fmt.Errorf("root must be a directory, not a %v: %w", e.Type, ErrInvalid)
		}
		return w.root.setMeta(e, w.defTime)
	}
	parent, err := w.lookupDir(names[:len(names)-1])
	if err != nil {
		return fmt.Errorf("add %s: %w", e.Path, err)
	}
	name := names[len(names)-1]
	if parent == w.root && name == lostFound && e.Type != TypeDir {
		return fmt.Errorf("add %s: /lost+found must be a directory (e2fsck's): %w", e.Path, ErrInvalid)
	}
	old := parent.children[name]
	if e.Type == TypeDir && old != nil && old.typ == TypeDir {
		return old.setMeta(e, w.defTime)
	}
	if e.Type == TypeHardLink {
		return w.link(parent, name, old, e)
	}
	n := &inode{typ: e.Type}
	if err := n.setMeta(e, w.defTime); err != nil {
		return fmt.Errorf("add %s: %w", e.Path, err)
	}
	switch e.Type {
	case TypeDir:
		n.children = map[string]*inode{}
	case TypeRegular:
		if e.Size < 0 {
			return fmt.Errorf("add %s: negative size: %w", e.Path, ErrInvalid)
		}
		// The old entry goes only once the new data is in, so that a
		// failed Add leaves the tree as it was.
		if err := w.writeData(n, data, e.Size); err != nil {
			return fmt.Errorf("add %s: %w", e.Path, err)
		}
	case TypeSymlink:
		if err := w.setSymlink(n, e.LinkTarget); err != nil {
			return fmt.Errorf("add %s: %w", e.Path, err)
		}
	case TypeCharDevice, TypeBlockDevice:
		// Linux's dev_t keeps 12 bits of major and 20 of minor.
		if e.DevMajor >= 1<<12 || e.DevMinor >= 1<<20 {
			return fmt.Errorf("add %s: device %d:%d out of range: %w", e.Path, e.DevMajor, e.DevMinor, ErrInvalid)
		}
		n.major, n.minor = e.DevMajor, e.DevMinor
	case TypeFifo, TypeSocket:
	default:
		return fmt.Errorf("add %s: unknown type %v: %w", e.Path, e.Type, ErrInvalid)
	}
	if old != nil {
		w.unlink(parent, name, old)
	}
	w.insert(parent, name, n)
	return nil
}

// link adds name in parent for the inode at e.LinkTarget.
func (w *Writer) link(parent *inode, name string, old *inode, e Entry) error {
	tnames, err := splitPath(e.LinkTarget)
	if err != nil {
		return fmt.Errorf("link %s: target: %w", e.Path, err)
	}
	target, err := w.lookup(tnames)
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", e.Path, e.LinkTarget, err)
	}
	if target.typ == TypeDir {
		return fmt.Errorf("link %s to %s: %w", e.Path, e.LinkTarget, ErrIsDir)
	}
	if target == old {
		return nil
	}
	if target.links >= maxLinks {
		return fmt.Errorf("link %s to %s: %w", e.Path, e.LinkTarget, ErrTooMany)
	}
	if old != nil {
		w.unlink(parent, name, old)
	}
	w.insert(parent, name, target)
	return nil
}

// Remove deletes the entry at path, and everything below it for a
// directory. Blocks no other name uses are reused by later files.
func (w *Writer) Remove(path string) error {
	if err := w.usable(); err != nil {
		return err
	}
	names, err := splitPath(path)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("remove root: %w", ErrInvalid)
	}
	parent, err := w.lookupDir(names[:len(names)-1])
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	old := parent.children[names[len(names)-1]]
	if old == nil {
		return fmt.Errorf("remove %s: %w", path, ErrNotExist)
	}
	w.unlink(parent, names[len(names)-1], old)
	return nil
}

// Lookup reports the type of the entry at path.
func (w *Writer) Lookup(path string) (FileType, bool) {
	names, err := splitPath(path)
	if err != nil {
		return 0, false
	}
	n, err := w.lookup(names)
	if err != nil {
		return 0, false
	}
	return n.typ, true
}

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

func (w *Writer) lookup(names []string) (*inode, error) {
	n := w.root
	for i, name := range names {
		if n.typ != TypeDir {
			return nil, fmt.Errorf("%s: %w", joinNames(names[:i]), ErrNotDir)
		}
		c := n.children[name]
		if c == nil {
			return nil, fmt.Errorf("%s: %w", joinNames(names[:i+1]), ErrNotExist)
		}
		n = c
	}
	return n, nil
}

func (w *Writer) lookupDir(names []string) (*inode, error) {
	n, err := w.lookup(names)
	if err != nil {
		return nil, err
	}
	if n.typ != TypeDir {
		return nil, fmt.Errorf("%s: %w", joinNames(names), ErrNotDir)
	}
	return n, nil
}

func joinNames(names []string) string {
	s := "/"
	for i, n := range names {
		if i > 0 {
			s += "/"
		}
		s += n
	}
	return s
}

func (w *Writer) insert(parent *inode, name string, n *inode) {
	if n.links == 0 {
		w.inodes++
	}
	n.links++
	parent.children[name] = n
	if n.typ == TypeDir {
		parent.subdirs++
	}
}

// unlink drops one name; an inode left without names gives its blocks back.
func (w *Writer) unlink(parent *inode, name string, n *inode) {
	delete(parent.children, name)
	if n.typ == TypeDir {
		parent.subdirs--
		for cname, c := range n.children { // deleting while ranging is allowed
			w.unlink(n, cname, c)
		}
	}
	n.links--
	if n.links == 0 {
		w.inodes--
		for _, x := range n.extents {
			w.alloc.release(span{uint64(x.start), uint64(x.len)})
		}
		n.extents = nil
	}
}
