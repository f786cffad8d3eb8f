//go:build !linux && !darwin

package hostinfo

import (
	"fmt"
	"time"
)

func readMemory() (Memory, error) { return Memory{}, fmt.Errorf("host memory: %w", ErrNotSupported) }
func cpuTime() (time.Duration, error) {
	return 0, fmt.Errorf("host CPU time: %w", ErrNotSupported)
}
func bootTime() (time.Time, error) { return time.Time{}, fmt.Errorf("boot time: %w", ErrNotSupported) }
func readOS() (OS, error)          { return OS{}, fmt.Errorf("OS info: %w", ErrNotSupported) }
func defaultInterface() (string, error) {
	return "", fmt.Errorf("default route: %w", ErrNotSupported)
}

// ReadDisk is not implemented on this platform.
func ReadDisk(path string) (Disk, error) {
	return Disk{}, fmt.Errorf("statfs %s: %w", path, ErrNotSupported)
}
