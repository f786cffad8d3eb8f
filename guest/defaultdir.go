package guest

import (
	"os"
	"path/filepath"
	"runtime"
)

// DefaultDir is where the node, the CLI and the shim look for the guest
// bundle: $VKAV_GUEST_DIR, else guest/<arch> next to the running binary
// (bin/guest/<arch>, where `make guest` puts it). The shim inherits the
// node's environment and sits beside it, so all of them find the same one.
func DefaultDir() string {
	if d := os.Getenv("VKAV_GUEST_DIR"); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return filepath.Join("bin", "guest", runtime.GOARCH)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), "guest", runtime.GOARCH)
}
