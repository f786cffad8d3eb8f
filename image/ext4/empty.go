package ext4

import (
	"fmt"
	"os"
	"path/filepath"
)

// CreateEmpty makes an empty, writable ext4 filesystem of size bytes
// (rounded down to 4 KiB) at path: a sparse file holding only the root,
// lost+found and the metadata, ready for the kernel to allocate in. It is
// written under a temporary name and renamed into place, without fsync: a
// writable layer lives and dies with its VM, and an emptyDir with its pod,
// which a host crash ends too; the hypervisor reads it through the same
// page cache (the fsync cost every container start 5–50 ms on this
// project's virtual disks).
func CreateEmpty(path string, size int64) error {
	return createEmpty(path, size, 0o755)
}

// CreateEmptyVolume is CreateEmpty with a root directory of mode rootMode
// (permission bits, setgid and sticky included): an emptyDir volume is
// 0777 like the kubelet's (pkg/volume/emptydir), whatever the umask.
func CreateEmptyVolume(path string, size int64, rootMode uint32) error {
	return createEmpty(path, size, rootMode)
}

func createEmpty(path string, size int64, rootMode uint32) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w, err := NewWriter(f, Options{Size: size})
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := w.Add(Entry{Path: "/", Type: TypeDir, Mode: rootMode}, nil); err != nil {
		return fmt.Errorf("create %s: root directory: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: close: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}
