// Package sockpath checks unix socket paths against the platform's
// sun_path size before a listen or connect fails with a bare EINVAL.
package sockpath

import (
	"errors"
	"fmt"
	"runtime"
)

// ErrTooLong reports a socket path that does not fit sun_path.
var ErrTooLong = errors.New("unix socket path too long")

// MaxLen is the longest socket path goos accepts: sun_path's size minus
// its terminating NUL. sun_path is 108 bytes on Linux (<linux/un.h>
// UNIX_PATH_MAX) and 104 on darwin and the BSDs (<sys/un.h>).
func MaxLen(goos string) int {
	if goos == "linux" || goos == "android" {
		return 107
	}
	return 103
}

// CheckFor reports whether path fits a socket address on goos.
func CheckFor(goos, path string) error {
	if max := MaxLen(goos); len(path) > max {
		return fmt.Errorf("%w: %s is %d bytes, %s allows %d (shorten the state directory)", ErrTooLong, path, len(path), goos, max)
	}
	return nil
}

// Check is CheckFor on this platform.
func Check(path string) error { return CheckFor(runtime.GOOS, path) }
