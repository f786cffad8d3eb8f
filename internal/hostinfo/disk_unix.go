//go:build linux || darwin

package hostinfo

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ReadDisk returns the size and free space of the file system holding path.
func ReadDisk(path string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	// Bsize is int64 on Linux and uint32 on darwin; both fit uint64.
	bs := uint64(st.Bsize)
	d := Disk{
		TotalBytes: st.Blocks * bs,
		FreeBytes:  st.Bavail * bs,
		Inodes:     st.Files,
		InodesFree: st.Ffree,
	}
	// Used counts blocks reserved for root too (f_bfree, not f_bavail), as
	// df does.
	d.UsedBytes = (st.Blocks - st.Bfree) * bs
	return d, nil
}
