package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FinitModule loads one kernel module file with finit_module(2). Module
// files in the initrd are plain .ko (the guest bundle decompresses them).
func FinitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		if err == unix.EEXIST {
			return ErrModuleLoaded
		}
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// ReadModuleList reads and parses a modules.list file; a missing file is
// an empty list (a kernel with everything built in).
func ReadModuleList(path string) ([]string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open module list: %w", err)
	}
	defer f.Close()
	return ParseModuleList(f)
}
