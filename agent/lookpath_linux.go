package agent

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// lookPathInRoot resolves file the way execvp(3) would inside the
// container: names with a slash are taken as they are (relative to cwd),
// others are searched in pathEnv. It returns the path inside the container.
// A match that exists but cannot be executed is reported (126) unless a
// later PATH entry has an executable one.
func lookPathInRoot(root, file, pathEnv, cwd string) (string, error) {
	if file == "" {
		return "", fmt.Errorf("exec %q: %w", file, ErrExecutableNotFound)
	}
	if strings.Contains(file, "/") {
		p := file
		if !path.IsAbs(p) {
			p = path.Join("/", cwd, p)
		}
		if err := checkExecutable(root, p); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				return "", fmt.Errorf("exec %q: no such file or directory: %w", file, ErrExecutableNotFound)
			}
			return "", fmt.Errorf("exec %q: %w", file, err)
		}
		return p, nil
	}
	var denied error
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		if !path.IsAbs(dir) {
			dir = path.Join("/", cwd, dir)
		}
		p := path.Join(dir, file)
		err := checkExecutable(root, p)
		if err == nil {
			return p, nil
		}
		if denied == nil && (errors.Is(err, ErrNotExecutable) || errors.Is(err, ErrIsDirectory)) {
			denied = fmt.Errorf("exec %q: %s: %w", file, p, err)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("exec %q: %w", file, ErrExecutableNotFound)
}

// checkExecutable reports whether p inside root is a regular file with an
// execute bit (the check exec.LookPath makes; the kernel has the last word
// on permissions for other users).
func checkExecutable(root, p string) error {
	f, err := openInRoot(root, p, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return ErrIsDirectory
	case st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0:
		return ErrNotExecutable
	}
	return nil
}
