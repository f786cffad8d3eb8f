package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// mountVolumeDisk makes a "disk" mount: an emptyDir volume on a disk of
// its own (found by the serial in source), mounted once under the
// container's volumes directory and bound at each destination. nosuid and
// nodev as the shares' host side does; discard gives deleted files' blocks
// back to the host's sparse image. The volume outlives container restarts:
// a restart remounts the same disk, content intact.
func (s *Server) mountVolumeDisk(ctx context.Context, c *container, m *api.Mount, mounted map[string]string) error {
	serial := m.GetSource()
	if err := checkID("disk", serial); err != nil {
		return err
	}
	dir, ok := mounted[serial]
	if !ok {
		waitCtx, cancel := context.WithTimeout(ctx, s.cfg.DiskWait)
		dev, err := findDiskBySerial(waitCtx, s.cfg.SysBlockDir, s.cfg.DevDir, serial)
		cancel()
		if err != nil {
			return fmt.Errorf("volume on %s: %w", m.GetDestination(), err)
		}
		dir = filepath.Join(c.dir, "volumes", "disk-"+serial)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("volume on %s: %w", m.GetDestination(), err)
		}
		if err := unix.Mount(dev, dir, "ext4", nosuid|nodev, "discard"); err != nil {
			return fmt.Errorf("volume on %s: mount %s: %w", m.GetDestination(), dev, err)
		}
		if err := dropFreshLostFound(dir); err != nil {
			return fmt.Errorf("volume on %s: %w", m.GetDestination(), err)
		}
		mounted[serial] = dir
	}
	return bindIn(c.rootfs, dir, m.GetDestination(), true, m.GetReadOnly())
}

// dropFreshLostFound removes the empty lost+found of a volume nothing has
// been written to yet, so the container finds it empty as the kubelet's
// emptyDir is (initdb, for one, refuses a data directory holding
// lost+found). The kernel does not need it; e2fsck recreates it.
func dropFreshLostFound(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read volume: %w", err)
	}
	if len(ents) != 1 || ents[0].Name() != "lost+found" || !ents[0].IsDir() {
		return nil
	}
	err = unix.Rmdir(filepath.Join(dir, "lost+found"))
	if err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("remove lost+found: %w", err)
	}
	return nil
}
