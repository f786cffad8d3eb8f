package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Volume ownership as the kubelet applies a pod's fsGroup
// (pkg/volume/volume_linux.go SetVolumeOwnership): every file's group
// becomes fsGroup, with group read (and write unless the volume is
// read-only) added to its mode, and directories also get the group's
// search bit and setgid so new files inherit the group.
const (
	fsGroupRW   = 0o660
	fsGroupRO   = 0o440
	fsGroupExec = 0o110
)

// applyFSGroup walks dir; symlinks get only the group.
func applyFSGroup(dir string, gid uint32, readOnly bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(gid)); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		mask := uint32(fsGroupRW)
		if readOnly {
			mask = fsGroupRO
		}
		if info.IsDir() {
			mask |= unix.S_ISGID | fsGroupExec
		}
		mode := st.Mode & 0o7777
		if mode|mask == mode {
			return nil
		}
		return unix.Chmod(p, mode|mask)
	})
}

// volumeOwnership applies the container's fsGroup to a volume's directory;
// for a share the host side may not let the guest change owners (vz), so
// a refusal there is logged, not fatal.
func (s *Server) volumeOwnership(c *container, dir string, readOnly, share bool) error {
	if c.sec == nil || c.sec.fsGroup == nil {
		return nil
	}
	err := applyFSGroup(dir, *c.sec.fsGroup, readOnly)
	if err != nil && share && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EROFS)) {
		s.log.Warn("fsGroup ownership of a shared volume", "container", c.id, "dir", dir, "err", err)
		return nil
	}
	return err
}

// mountOwnership applies fsGroup to a user mount just made, as the kubelet
// does to emptyDir, configMap, secret, projected and downwardAPI volumes
// (files volumes are read-only to the container: group read only).
func (s *Server) mountOwnership(c *container, m mountSpec) error {
	if c.sec == nil || c.sec.fsGroup == nil {
		return nil
	}
	switch m.GetType() {
	case "files":
		return s.volumeOwnership(c, c.volumes[m.GetVolume()], true, false)
	case "tmpfs", "share", "disk":
		if m.GetReadOnly() {
			return nil
		}
		f, err := openInRoot(c.rootfs, m.GetDestination(), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		// "/." follows the descriptor's magic link to the directory.
		return s.volumeOwnership(c, procFDPath(f)+"/.", false, m.GetType() == "share")
	}
	return nil
}

// mountSpec is the part of api.Mount mountOwnership reads.
type mountSpec interface {
	GetType() string
	GetVolume() string
	GetReadOnly() bool
	GetDestination() string
}
