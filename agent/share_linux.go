package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// mountShare mounts the host directory exported under tag at dst inside
// rootfs. Both backends export shares as virtio-fs (QEMU through
// virtiofsd, vz natively), so this is the only guest code for them; the
// tag is the device's, found by the virtiofs driver. There is no 9p
// fallback: Debian's cloud kernel has no 9p and no backend exports it.
//
// Read-only is honoured here (MS_RDONLY) and, under QEMU, by the host,
// which serves a read-only share from a read-only mount, so a remount in
// the guest does not make it writable.
func mountShare(rootfs, dst, tag string, readOnly bool) error {
	if tag == "" {
		return fmt.Errorf("share mount on %s: empty tag: %w", dst, ErrInvalidArgument)
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := mountIn(rootfs, dst, true, tag, "virtiofs", flags, ""); err != nil {
		return fmt.Errorf("share %q: %w", tag, err)
	}
	return nil
}
