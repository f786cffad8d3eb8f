package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// The files-volume layout is the kubelet's atomic writer's
// (pkg/volume/util/atomic_writer.go), which applications watching
// configMap and secret volumes depend on:
//
//	..2026_11_29_10_00_00.123456789/key   the content, one directory per update
//	..data -> ..2026_11_29_10_00_00.123456789
//	key -> ..data/key                     one symlink per top-level entry
//
// An update writes a new timestamped directory, swaps ..data with a
// rename (atomic), fixes the top-level links and removes the old directory.
const (
	filesDataLink    = "..data"
	filesDataLinkTmp = "..data_tmp"
)

// ErrBadFilePath is returned for a files-volume path that is empty,
// absolute or leaves the volume.
var ErrBadFilePath = errors.New("invalid files volume path")

// checkFilePath validates one file's path relative to the volume root.
func checkFilePath(p string) error {
	if p == "" || path.IsAbs(p) || strings.Contains(p, "\\") {
		return fmt.Errorf("%w: %q", ErrBadFilePath, p)
	}
	for _, part := range strings.Split(p, "/") {
		// The kubelet also forbids names starting with "..", which would
		// clash with its own entries.
		if part == "" || part == "." || strings.HasPrefix(part, "..") {
			return fmt.Errorf("%w: %q", ErrBadFilePath, p)
		}
	}
	return nil
}

// writeFilesVolume makes dir hold exactly files.
func writeFilesVolume(dir string, files []*api.File, now time.Time) error {
	top := map[string]bool{}
	for _, f := range files {
		if err := checkFilePath(f.GetPath()); err != nil {
			return err
		}
		first, _, _ := strings.Cut(f.GetPath(), "/")
		top[first] = true
	}
	tsDir, err := os.MkdirTemp(dir, now.UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("create files volume data dir in %s: %w", dir, err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tsDir, err)
	}
	for _, f := range files {
		dst := filepath.Join(tsDir, filepath.FromSlash(f.GetPath()))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("create dir for %s: %w", f.GetPath(), err)
		}
		mode := fs.FileMode(f.GetMode()) & fs.ModePerm
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, f.GetContent(), mode); err != nil {
			return fmt.Errorf("write %s: %w", f.GetPath(), err)
		}
		// WriteFile's mode is filtered by the umask; set it exactly.
		if err := os.Chmod(dst, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", f.GetPath(), err)
		}
	}

	oldData, err := os.Readlink(filepath.Join(dir, filesDataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s link: %w", filesDataLink, err)
	}
	tmpLink := filepath.Join(dir, filesDataLinkTmp)
	if err := os.Remove(tmpLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", filesDataLinkTmp, err)
	}
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return fmt.Errorf("link new files volume data: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, filesDataLink)); err != nil {
		return fmt.Errorf("swap %s: %w", filesDataLink, err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list files volume %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") || top[name] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove stale entry %s: %w", name, err)
		}
	}
	for name := range top {
		link := filepath.Join(dir, name)
		want := filesDataLink + "/" + name
		if got, err := os.Readlink(link); err == nil && got == want {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(want, link); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	if oldData != "" && oldData != filepath.Base(tsDir) {
		if err := os.RemoveAll(filepath.Join(dir, filepath.Base(oldData))); err != nil {
			return fmt.Errorf("remove old files volume data %s: %w", oldData, err)
		}
	}
	return nil
}
