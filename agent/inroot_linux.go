package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths inside a container's root filesystem come from the image, which
// may hold symlinks such as /etc -> / or absolute links meant for the
// container. The agent is not chrooted, so it resolves every such path with
// openat2(RESOLVE_IN_ROOT) (Linux 5.6): symlinks resolve as if the rootfs
// were /, and ".." stops at it.

// openInRoot opens p (a path inside root) with flags.
func openInRoot(root, p string, flags int, mode uint32) (*os.File, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	return openAt2InRoot(rootFD, root, p, flags, mode)
}

func openAt2InRoot(rootFD int, root, p string, flags int, mode uint32) (*os.File, error) {
	rel := strings.TrimLeft(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: unix.RESOLVE_IN_ROOT}
	for {
		fd, err := unix.Openat2(rootFD, rel, how)
		if err == unix.EINTR || err == unix.EAGAIN {
			// EAGAIN: a concurrent rename raced the resolution; retry.
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: path.Join(root, rel), Err: err}
		}
		return os.NewFile(uintptr(fd), path.Join(root, rel)), nil
	}
}

// mkdirAllInRoot creates directory p inside root and any missing parents.
func mkdirAllInRoot(root, p string, mode uint32) error {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	cur := "/"
	for _, part := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if part == "" {
			continue
		}
		parent, err := openAt2InRoot(rootFD, root, cur, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("mkdir %s in %s: %w", p, root, err)
		}
		err = unix.Mkdirat(int(parent.Fd()), part, mode)
		parent.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("mkdir %s in %s: %w", path.Join(cur, part), root, err)
		}
		cur = path.Join(cur, part)
	}
	// The last component may be a link or a file: check it is a directory.
	f, err := openAt2InRoot(rootFD, root, cur, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("mkdir %s in %s: %w", p, root, err)
	}
	return f.Close()
}

// mountTarget returns an O_PATH handle on p inside root, creating it as a
// directory (dir) or an empty file when missing. Mounting onto
// /proc/self/fd/N of the handle mounts exactly there, even if the image
// holds symlinks along the path.
func mountTarget(root, p string, dir bool) (*os.File, error) {
	if dir {
		if err := mkdirAllInRoot(root, p, 0o755); err != nil {
			return nil, err
		}
		return openInRoot(root, p, unix.O_PATH|unix.O_DIRECTORY, 0)
	}
	if err := mkdirAllInRoot(root, path.Dir(path.Clean("/"+p)), 0o755); err != nil {
		return nil, err
	}
	f, err := openInRoot(root, p, unix.O_PATH, 0)
	if errors.Is(err, unix.ENOENT) {
		var c *os.File
		c, err = openInRoot(root, p, unix.O_CREAT|unix.O_WRONLY, 0o644)
		if err == nil {
			c.Close()
			f, err = openInRoot(root, p, unix.O_PATH, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create mount target %s in %s: %w", p, root, err)
	}
	return f, nil
}

// procFDPath names an open file for mount(2).
func procFDPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// readFileInRoot reads at most limit bytes of p inside root.
func readFileInRoot(root, p string, limit int64) ([]byte, error) {
	f, err := openInRoot(root, p, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
