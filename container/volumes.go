package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vk-applevm/vk-applevm/image/ext4"
)

// emptyDirMode is the mode of an emptyDir's root, the kubelet's
// (pkg/volume/emptydir: 0777), so that any uid in the container can write.
const emptyDirMode = 0o777

// volumeParentMode keeps the directories above volumes private to the node
// (the pod directory is 0750 too).
const volumeParentMode = 0o750

// placeOwnVolumeDisks gives the VM's own volume disks (MountDisk without
// a HostPath) an image path in the VM's directory dir, which Delete
// removes with everything else of the VM. It returns a copy: the caller's
// mounts stay as they were.
func placeOwnVolumeDisks(dir string, mounts []Mount) []Mount {
	out := append([]Mount(nil), mounts...)
	n := 0
	for i := range out {
		if out[i].Kind == MountDisk && out[i].HostPath == "" {
			out[i].HostPath = filepath.Join(dir, "volumes", "volume"+strconv.Itoa(n)+".ext4")
			n++
		}
	}
	return out
}

// prepareVolumes makes the host side of a VM's volumes: a shared
// directory 0777 (explicitly: MkdirAll's mode passes through the umask,
// which gave 0755 and left non-root containers unable to write), and a
// disk image created with its size when it does not exist yet. Both are
// kept as they are when present: the volume outlives the VM (a container
// restart or a new VM of the same pod container reuses it).
func prepareVolumes(mounts []Mount) error {
	for _, m := range mounts {
		switch m.Kind {
		case MountShare:
			if err := makeEmptyDir(m.HostPath); err != nil {
				return err
			}
		case MountDisk:
			if err := makeVolumeDisk(m.HostPath, m.SizeBytes); err != nil {
				return err
			}
		}
	}
	return nil
}

func makeEmptyDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shared directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), volumeParentMode); err != nil {
		return fmt.Errorf("create shared directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, emptyDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create shared directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, emptyDirMode); err != nil {
		return fmt.Errorf("create shared directory %s: %w", dir, err)
	}
	return nil
}

func makeVolumeDisk(path string, size uint64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("volume disk %s: %w", path, err)
	}
	if size == 0 {
		return fmt.Errorf("volume disk %s: no size", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), volumeParentMode); err != nil {
		return fmt.Errorf("create volume disk %s: %w", path, err)
	}
	// CreateEmptyVolume writes a temporary file and renames it, so a crash
	// never leaves a half-made image under the final name.
	if err := ext4.CreateEmptyVolume(path, int64(size), emptyDirMode); err != nil {
		return fmt.Errorf("create volume disk: %w", err)
	}
	return nil
}
