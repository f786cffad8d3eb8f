package rootfs

import "golang.org/x/sys/unix"

// freeBytes is the space an unprivileged writer may still use in dir's
// filesystem, and the filesystem's size.
func freeBytes(dir string) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
