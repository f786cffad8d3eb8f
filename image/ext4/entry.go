package ext4

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// FileType is the kind of an Entry.
type FileType uint8

const (
	TypeRegular FileType = iota + 1
	TypeDir
	TypeSymlink
	// TypeHardLink adds a name for the existing non-directory at
	// Entry.LinkTarget; the entry's other fields are ignored.
	TypeHardLink
	TypeCharDevice
	TypeBlockDevice
	TypeFifo
	TypeSocket
)

func (t FileType) String() string {
	switch t {
	case TypeRegular:
		return "regular file"
	case TypeDir:
		return "directory"
	case TypeSymlink:
		return "symlink"
	case TypeHardLink:
		return "hard link"
	case TypeCharDevice:
		return "character device"
	case TypeBlockDevice:
		return "block device"
	case TypeFifo:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return fmt.Sprintf("FileType(%d)", uint8(t))
}

// Entry describes one name to put in the filesystem.
type Entry struct {
	// Path is slash-separated and relative to the root; "", "." and "/"
	// name the root itself (only TypeDir, to set its metadata). A leading
	// "/" or "./" is ignored; "." and ".." components are refused.
	Path string
	Type FileType
	// Mode holds the permission bits including setuid, setgid and sticky
	// (07777); the file type comes from Type.
	Mode     uint32
	UID, GID uint32
	// Size is the number of bytes the data reader of a regular file
	// yields.
	Size int64
	// Zero times take the Writer's Options.Time.
	ModTime, AccessTime, ChangeTime time.Time
	// LinkTarget is a symlink's target (1 to 4095 bytes) or, for
	// TypeHardLink, the path of the existing entry to link to.
	LinkTarget         string
	DevMajor, DevMinor uint32
	// Xattrs maps full names ("security.capability", "user.x",
	// "trusted.x", "system.posix_acl_access") to values. POSIX ACLs are
	// given in the kernel's xattr format and stored in ext4's.
	Xattrs map[string][]byte
}

// Errors wrapped by Writer methods.
var (
	ErrNotExist  = errors.New("ext4: no such file or directory")
	ErrNotDir    = errors.New("ext4: not a directory")
	ErrIsDir     = errors.New("ext4: is a directory")
	ErrInvalid   = errors.New("ext4: invalid entry")
	ErrClosed    = errors.New("ext4: writer closed")
	ErrTooLarge  = errors.New("ext4: too large")
	ErrTooMany   = errors.New("ext4: too many links")
	ErrShortData = errors.New("ext4: data shorter than size")
	ErrLongData  = errors.New("ext4: data longer than size")
)

// splitPath turns an entry path into its components, refusing anything that
// could name something other than a plain descendant of the root.
func splitPath(p string) ([]string, error) {
	p = strings.TrimPrefix(p, "/")
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" || p == "." {
		return nil, nil
	}
	names := strings.Split(p, "/")
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, fmt.Errorf("path %q: %w", p, err)
		}
	}
	return names, nil
}

func checkName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("empty component: %w", ErrInvalid)
	case n == "." || n == "..":
		return fmt.Errorf("component %q: %w", n, ErrInvalid)
	case len(n) > maxNameLen:
		return fmt.Errorf("name of %d bytes exceeds %d: %w", len(n), maxNameLen, ErrInvalid)
	case strings.IndexByte(n, 0) >= 0:
		return fmt.Errorf("name contains NUL: %w", ErrInvalid)
	}
	return nil
}
