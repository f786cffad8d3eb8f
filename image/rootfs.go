package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Rootfs returns the image's read-only root filesystem,
// images/rootfs/<manifest-hex>.ext4, building it on first use. Concurrent
// callers, in this process or others, share one build; the file is never
// modified afterwards (containers get a copy-on-write clone or mount it
// read-only).
func (s *Store) Rootfs(ctx context.Context, img *Image) (string, error) {
	h, err := sha256Hash(img.Digest)
	if err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", img.Ref, err)
	}
	dst := filepath.Join(s.rootfsDir(), h.Hex+".ext4")
	if fileExists(dst) {
		// Its time is the image's last use, which garbage collection
		// orders by (GC).
		now := time.Now()
		_ = os.Chtimes(dst, now, now)
		return dst, nil
	}
	unlock, err := s.lockGC(ctx, false)
	if err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", img.Ref, err)
	}
	defer unlock()
	_, err = s.rootfs.do(ctx, h.Hex, func(ctx context.Context) (string, error) {
		unlock, err := lockFile(ctx, filepath.Join(s.lockDir(), "rootfs-"+h.Hex+".lock"), true)
		if err != nil {
			return "", err
		}
		defer unlock()
		if fileExists(dst) { // built by another process meanwhile
			return dst, nil
		}
		return dst, s.buildRootfsFile(ctx, img, dst)
	})
	if err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", img.Ref, err)
	}
	return dst, nil
}

// buildRootfsFile builds into a hidden temp name and renames, so dst
// appears only complete.
func (s *Store) buildRootfsFile(ctx context.Context, img *Image, dst string) error {
	start := time.Now()
	h, err := sha256Hash(img.Digest)
	if err != nil {
		return err
	}
	li, err := layout.Path(s.dir).Image(h)
	if err != nil {
		return fmt.Errorf("open stored image %s: %w", img.Digest, err)
	}
	layers, err := li.Layers()
	if err != nil {
		return fmt.Errorf("layers of %s: %w", img.Digest, err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layers of %s: %w", img.Digest, err)
		}
		if !s.hasBlob(d, -1) {
			return fmt.Errorf("layer %s of %s: %w (pull the image again)", d, img.Digest, ErrNotFound)
		}
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return fmt.Errorf("temp name: %w", err)
	}
	tmp := filepath.Join(s.rootfsDir(), "."+h.Hex+".ext4."+hex.EncodeToString(suffix))
	defer os.Remove(tmp) // no-op after the rename
	if err := s.build(ctx, layers, tmp); err != nil {
		return fmt.Errorf("build %s: %w", tmp, err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install rootfs: %w", err)
	}
	s.log.InfoContext(ctx, "built rootfs", "image", img.Ref, "digest", img.Digest, "path", dst,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// syncFile flushes a file the builder wrote before it is renamed into
// place, so a crash cannot leave a complete-looking but partial rootfs.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist) && err == nil
}
