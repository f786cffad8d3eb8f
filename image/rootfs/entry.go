package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/vk-applevm/vk-applevm/image/ext4"
)

// cleanPath turns a tar name into a path relative to the image root and
// its components. Absolute names and ".." components are refused outright:
// a layer has no business naming anything outside its tree.
func cleanPath(name string) (string, []string, error) {
	if strings.HasPrefix(name, "/") {
		return "", nil, fmt.Errorf("absolute path %q", name)
	}
	var comps []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", nil, fmt.Errorf("path %q leaves the tree", name)
		}
		if strings.IndexByte(c, 0) >= 0 {
			return "", nil, fmt.Errorf("path %q contains NUL", name)
		}
		comps = append(comps, c)
	}
	return strings.Join(comps, "/"), comps, nil
}

func fileType(flag byte) (ext4.FileType, error) {
	switch flag {
	case tar.TypeReg, tar.TypeGNUSparse:
		return ext4.TypeRegular, nil
	case tar.TypeDir:
		return ext4.TypeDir, nil
	case tar.TypeSymlink:
		return ext4.TypeSymlink, nil
	case tar.TypeLink:
		return ext4.TypeHardLink, nil
	case tar.TypeChar:
		return ext4.TypeCharDevice, nil
	case tar.TypeBlock:
		return ext4.TypeBlockDevice, nil
	case tar.TypeFifo:
		return ext4.TypeFifo, nil
	}
	return 0, fmt.Errorf("unsupported tar entry type %q", flag)
}

// xattrPrefix marks xattrs in PAX records (the GNU tar and Docker
// convention).
const xattrPrefix = "SCHILY.xattr."

var errBadID = errors.New("owner id out of range")

// toEntry converts a tar header for the image path.
func toEntry(h *tar.Header, path string, typ ext4.FileType) (ext4.Entry, error) {
	if h.Uid < 0 || h.Uid > math.MaxUint32 || h.Gid < 0 || h.Gid > math.MaxUint32 {
		return ext4.Entry{}, fmt.Errorf("uid %d gid %d: %w", h.Uid, h.Gid, errBadID)
	}
	if h.Devmajor < 0 || h.Devmajor > math.MaxUint32 || h.Devminor < 0 || h.Devminor > math.MaxUint32 {
		return ext4.Entry{}, fmt.Errorf("device %d:%d out of range", h.Devmajor, h.Devminor)
	}
	e := ext4.Entry{
		Path:       path,
		Type:       typ,
		Mode:       uint32(h.Mode) & 0o7777,
		UID:        uint32(h.Uid),
		GID:        uint32(h.Gid),
		ModTime:    h.ModTime,
		AccessTime: h.AccessTime,
		ChangeTime: h.ChangeTime,
		DevMajor:   uint32(h.Devmajor),
		DevMinor:   uint32(h.Devminor),
	}
	// Extraction can't set ctime and sets atime to mtime when the
	// archive has none; do the same so images don't carry build times.
	if e.AccessTime.IsZero() {
		e.AccessTime = h.ModTime
	}
	if e.ChangeTime.IsZero() {
		e.ChangeTime = h.ModTime
	}
	switch typ {
	case ext4.TypeRegular:
		e.Size = h.Size
	case ext4.TypeSymlink:
		e.LinkTarget = h.Linkname
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			if e.Xattrs == nil {
				e.Xattrs = map[string][]byte{}
			}
			e.Xattrs[name] = []byte(v)
		}
	}
	return e, nil
}
