package rootfsbench

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Extract writes the flattened layers (whiteouts applied) into dir, the
// tree mkfs.ext4 -d reads. Hard links stay hard links, so mkfs writes the
// same data rootfs.Build does, once; owners are kept when running as root.
func Extract(layers []v1.Layer, dir string) error {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar(rc, dir); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	// mutate.Extract ends a failed extraction with a valid end of archive
	// and reports the failure only on the next read: read to the real end.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	return nil
}

type pendingLink struct{ name, target string }

func untar(r io.Reader, dir string) error {
	asRoot := os.Geteuid() == 0
	var links []pendingLink
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("unsafe path %q", h.Name)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			// Set at the end: a read-only directory would refuse its files.
			dirs = append(dirs, dirMode{dst, mode.Perm() | mode&(os.ModeSticky|os.ModeSetgid|os.ModeSetuid)})
		case tar.TypeReg:
			if err := writeFile(dst, tr, mode.Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeLink:
			// The flattened stream lists upper layers first: the target
			// may come later.
			links = append(links, pendingLink{dst, h.Linkname})
			continue
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", h.Name, h.Typeflag)
		}
		if asRoot {
			if err := os.Lchown(dst, h.Uid, h.Gid); err != nil {
				return err
			}
		}
	}
	for _, l := range links {
		target := filepath.Clean(strings.TrimPrefix(l.target, "/"))
		if !filepath.IsLocal(target) {
			return fmt.Errorf("unsafe hard link target %q", l.target)
		}
		if err := os.Link(filepath.Join(dir, target), l.name); err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dst string, r io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil { // umask
		f.Close()
		return err
	}
	return f.Close()
}
