package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sigKill is SIGKILL as a syscall.Signal.
const sigKill = syscall.SIGKILL

// diskPollInterval paces the wait for a disk to appear (its virtio_blk
// probe may still be running when CreateContainer arrives).
const diskPollInterval = 10 * time.Millisecond

// findDiskBySerial returns the device node of the block device whose
// serial (virtio-blk: /sys/block/vdX/serial) is serial, waiting for it to
// appear until ctx ends.
func findDiskBySerial(ctx context.Context, sysBlockDir, devDir, serial string) (string, error) {
	for {
		entries, err := os.ReadDir(sysBlockDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find disk %q: %w", serial, err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(sysBlockDir, e.Name(), "serial"))
			if err != nil {
				continue
			}
			if strings.TrimSpace(string(b)) == serial {
				return filepath.Join(devDir, e.Name()), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("find disk with serial %q under %s: %w", serial, sysBlockDir, ErrNotFound)
		case <-time.After(diskPollInterval):
		}
	}
}

// mountDisk mounts an ext4 disk (the kernel has ext4 built in, see
// docs/design.md); the image disk read-only.
func mountDisk(dev, target string, readOnly bool) error {
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, target, "ext4", flags, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, target, err)
	}
	return nil
}

// mountPoints returns the mount points at or under prefix, from
// /proc/self/mountinfo, in mount order.
func mountPoints(prefix string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	type mp struct {
		id   int
		path string
	}
	var found []mp
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			id, _ := strconv.Atoi(fields[0])
			found = append(found, mp{id, p})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	// mountinfo lists mounts in the order they were made, but mount ids
	// are a more robust order where lines were reordered by a move.
	sort.SliceStable(found, func(i, j int) bool { return found[i].id < found[j].id })
	out := make([]string, len(found))
	for i, m := range found {
		out[i] = m.path
	}
	return out, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything mounted at or under prefix, newest
// first. A mount still busy is detached (MNT_DETACH) so teardown never
// stalls on a stray open file.
func unmountUnder(prefix string) error {
	mps, err := mountPoints(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mps) - 1; i >= 0; i-- {
		err := unix.Unmount(mps[i], 0)
		if err == unix.EBUSY {
			err = unix.Unmount(mps[i], unix.MNT_DETACH)
		}
		if err != nil && err != unix.EINVAL && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mps[i], err))
		}
	}
	return errors.Join(errs...)
}
