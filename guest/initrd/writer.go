// Package initrd writes initial ramdisks in the "newc" cpio format that the
// Linux kernel unpacks into its initramfs (Documentation/driver-api/
// early-userspace/buffer-format.rst).
//
// Output is deterministic: every entry has uid/gid 0 and mtime 0, and inode
// numbers count up in write order, so the same calls give the same bytes.
// Parent directories that were not written explicitly are added (mode 0755)
// before their first child, because the kernel's unpacker does not create
// them.
package initrd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// newc header field values (include/uapi/linux/stat.h and cpio(5)).
const (
	magicNewc  = "070701"
	headerSize = 110 // 6-byte magic + 13 fields of 8 hex digits
	trailer    = "TRAILER!!!"

	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
	modeBlk  = 0o060000

	maxField = 0xffffffff // each field is 8 hex digits
)

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("initrd writer closed")

// Writer writes one newc archive. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	offset  int64
	nextIno uint32
	entries map[string]bool // names written so far (directories and others)
	dirs    map[string]bool
	err     error // sticky: a failed write leaves a corrupt archive
	closed  bool
}

// NewWriter returns a Writer that writes the archive to w. Call Close to add
// the trailer; Close does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, nextIno: 1, entries: map[string]bool{}, dirs: map[string]bool{}}
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	clean, err := w.prepare(name)
	if err != nil {
		return err
	}
	return w.dir(clean, perm)
}

// File adds a regular file of size bytes read from r.
func (w *Writer) File(name string, perm fs.FileMode, size int64, r io.Reader) error {
	clean, err := w.prepare(name)
	if err != nil {
		return err
	}
	if size < 0 || size > maxField {
		return fmt.Errorf("add %s: size %d outside the newc limit of 4 GiB", clean, size)
	}
	if err := w.header(clean, modeReg|modeBits(perm), 1, uint32(size), 0, 0); err != nil {
		return err
	}
	n, err := io.CopyN(w.w, r, size)
	w.offset += n
	if err != nil {
		w.err = fmt.Errorf("add %s: copy %d bytes (got %d): %w", clean, size, n, err)
		return w.err
	}
	return w.pad()
}

// FileFromPath adds the regular file at src under name with perm.
func (w *Writer) FileFromPath(name string, perm fs.FileMode, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("add %s: stat %s: %w", name, src, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("add %s: %s is not a regular file", name, src)
	}
	return w.File(name, perm, st.Size(), f)
}

// Symlink adds a symbolic link name pointing at target.
func (w *Writer) Symlink(name, target string) error {
	clean, err := w.prepare(name)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("add symlink %s: empty target", clean)
	}
	if err := w.header(clean, modeLink|0o777, 1, uint32(len(target)), 0, 0); err != nil {
		return err
	}
	if err := w.write([]byte(target)); err != nil {
		return err
	}
	return w.pad()
}

// CharDevice adds a character device node such as dev/console (5, 1).
func (w *Writer) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return w.device(name, modeChr, perm, major, minor)
}

// BlockDevice adds a block device node.
func (w *Writer) BlockDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return w.device(name, modeBlk, perm, major, minor)
}

// Close writes the trailer entry. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	// The trailer conventionally carries inode 0 and nlink 1 (GNU cpio).
	if err := w.rawHeader(trailer, 0, 0, 1, 0, 0, 0); err != nil {
		return err
	}
	w.closed = true
	return nil
}

func (w *Writer) device(name string, kind uint32, perm fs.FileMode, major, minor uint32) error {
	clean, err := w.prepare(name)
	if err != nil {
		return err
	}
	return w.header(clean, kind|modeBits(perm), 1, 0, major, minor)
}

// prepare validates name, refuses duplicates and writes missing parents.
func (w *Writer) prepare(name string) (string, error) {
	if w.closed {
		return "", ErrClosed
	}
	if w.err != nil {
		return "", w.err
	}
	clean, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if w.entries[clean] {
		return "", fmt.Errorf("add %s: already in the archive", clean)
	}
	if dir := path.Dir(clean); dir != "." {
		if err := w.parents(dir); err != nil {
			return "", err
		}
	}
	return clean, nil
}

func (w *Writer) parents(dir string) error {
	if w.dirs[dir] {
		return nil
	}
	if w.entries[dir] {
		return fmt.Errorf("add %s/...: %s is not a directory", dir, dir)
	}
	if parent := path.Dir(dir); parent != "." {
		if err := w.parents(parent); err != nil {
			return err
		}
	}
	return w.dir(dir, 0o755)
}

func (w *Writer) dir(clean string, perm fs.FileMode) error {
	// nlink 2 for "." and the entry in the parent; the kernel ignores it.
	if err := w.header(clean, modeDir|modeBits(perm), 2, 0, 0, 0); err != nil {
		return err
	}
	w.dirs[clean] = true
	return nil
}

func (w *Writer) header(name string, mode, nlink, size, rmajor, rminor uint32) error {
	ino := w.nextIno
	w.nextIno++
	w.entries[name] = true
	return w.rawHeader(name, ino, mode, nlink, size, rmajor, rminor)
}

func (w *Writer) rawHeader(name string, ino, mode, nlink, size, rmajor, rminor uint32) error {
	fields := []uint32{
		ino, mode, 0 /* uid */, 0 /* gid */, nlink, 0, /* mtime */
		size, 0, 0 /* dev major, minor */, rmajor, rminor,
		uint32(len(name) + 1), 0, /* check: unused in newc */
	}
	var b strings.Builder
	b.Grow(headerSize + len(name) + 4)
	b.WriteString(magicNewc)
	for _, f := range fields {
		fmt.Fprintf(&b, "%08X", f)
	}
	b.WriteString(name)
	b.WriteByte(0)
	if err := w.write([]byte(b.String())); err != nil {
		return err
	}
	return w.pad()
}

// pad aligns the archive to 4 bytes: headers+names and file data both are.
func (w *Writer) pad() error {
	if rem := w.offset % 4; rem != 0 {
		return w.write(make([]byte, 4-rem))
	}
	return nil
}

func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.offset += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write initrd: %w", err)
	}
	return w.err
}

// cleanName turns "/lib/x" or "lib/./x" into "lib/x" and refuses names that
// leave the archive root.
func cleanName(name string) (string, error) {
	clean := path.Clean("/" + name)[1:]
	if clean == "" {
		return "", fmt.Errorf("add %q: empty name (the archive root exists already)", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("add %q: name must not contain ..", name)
		}
	}
	if clean == trailer {
		return "", fmt.Errorf("add %q: name is reserved for the archive trailer", name)
	}
	return clean, nil
}

// modeBits keeps permission, setuid, setgid and sticky bits.
func modeBits(perm fs.FileMode) uint32 {
	bits := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if perm&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if perm&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}
