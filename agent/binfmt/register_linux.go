package binfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultDir is where binfmt_misc is mounted by convention.
const DefaultDir = "/proc/sys/fs/binfmt_misc"

// ErrNoKernelSupport means the kernel was built without binfmt_misc.
var ErrNoKernelSupport = errors.New("the guest kernel has no binfmt_misc (CONFIG_BINFMT_MISC)")

// Register adds r under dir (normally DefaultDir), mounting binfmt_misc
// there first when dir holds no register file. An entry that already
// exists under r.Name is left as it is, so calling Register again is a
// no-op. With the F flag the kernel opens the interpreter now, so it must
// exist.
func Register(dir string, r Registration) error {
	line, err := r.Line()
	if err != nil {
		return err
	}
	if err := mount(dir); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(dir, r.Name)); err == nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "register"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("register binfmt %s: %w", r.Name, err)
	}
	// One write: the kernel parses each write(2) as a whole registration.
	_, werr := f.Write([]byte(line))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("register binfmt %s (interpreter %s): %w", r.Name, r.Interpreter, werr)
	}
	if cerr != nil {
		return fmt.Errorf("register binfmt %s: %w", r.Name, cerr)
	}
	return nil
}

// mount mounts binfmt_misc on dir unless it is mounted there already.
func mount(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "register")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount binfmt_misc: %w", err)
	}
	err := unix.Mount("binfmt_misc", dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("mount binfmt_misc on %s: %w", dir, ErrNoKernelSupport)
	}
	if err != nil {
		return fmt.Errorf("mount binfmt_misc on %s: %w", dir, err)
	}
	return nil
}
