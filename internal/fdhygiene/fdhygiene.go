//go:build unix

// Package fdhygiene closes descriptors a long-lived helper process (the
// pod network's switch) inherited by accident. Such a process runs for
// weeks, detached from whoever started it; a descriptor it inherits, say a
// lock file of a `flock cmd` wrapper around the CLI that started it, would
// stay held for all that time.
package fdhygiene

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInherited closes every descriptor above stderr that is not
// close-on-exec, except keep. Go opens all its own descriptors
// close-on-exec, so the others came from the parent.
func CloseInherited(keep ...int) {
	dir := "/proc/self/fd"
	if _, err := os.Stat(dir); err != nil {
		dir = "/dev/fd" // macOS
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	kept := map[int]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || kept[fd] {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		unix.Close(fd)
	}
}
