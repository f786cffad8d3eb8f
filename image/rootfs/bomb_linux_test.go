package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/internal/testenv"
)

// gzipBomb is a gzip'd tar of one file of size zero bytes: a few MiB that
// inflate to size.
func gzipBomb(t *testing.T, size int64) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeroReader{}, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A layer that inflates past the free space of the state root's
// filesystem fails with "too large" before it fills the disk, and leaves
// nothing behind; an honest image still builds there.
func TestGzipBombFailsOnASmallDisk(t *testing.T) {
	testenv.NeedsRoot(t, "mounts a small tmpfs as the disk")
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=384m"); err != nil {
		t.Fatalf("mount a 384 MiB tmpfs: %v", err)
	}
	defer unix.Unmount(disk, unix.MNT_DETACH)
	bomb := gzipBomb(t, 1<<30)
	t.Logf("bomb: %d bytes of gzip inflating to 1 GiB", len(bomb))
	dst := filepath.Join(disk, "rootfs.ext4")
	_, err := Build(context.Background(), []v1.Layer{rawLayer(t, bomb)}, dst)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Build of a bomb: %v, want %v", err, ErrTooLarge)
	}
	t.Logf("error: %v", err)
	if ents, _ := os.ReadDir(disk); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(disk, &st); err != nil || st.Bfree != st.Blocks {
		t.Fatalf("the disk is not empty after the failed build: %d of %d blocks free (%v)", st.Bfree, st.Blocks, err)
	}
	honest := gzipBytes(t, tarBytes(t, dir("etc"), file("etc/passwd", "root:x:0:0\n")))
	if _, err := Build(context.Background(), []v1.Layer{rawLayer(t, honest)}, dst); err != nil {
		t.Fatalf("an honest image on the same disk: %v", err)
	}
}
