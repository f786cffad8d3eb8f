// Package rootfsbench is the image → ext4 conversion benchmark shared by
// image/rootfs's `go test -bench` and `make bench` (hack/bench): a
// realistic multi-layer image, and rootfs.Build timed against
// `mkfs.ext4 -d` writing the same tree, already extracted, in alternating
// rounds.
package rootfsbench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// Tree is the benchmark's image as uncompressed tar layers, bottom first:
// busybox, 3000 small files in 60 directories, 24 larger files (about
// 24 MiB), and a layer that deletes, replaces and hard-links some of them.
type Tree struct {
	Layers [][]byte
	// FileBytes is the size of all regular files of all layers.
	FileBytes int64
}

// NewTree builds the tree on the busybox test image (imagetest), whose
// static busybox comes from Debian's busybox-static.
func NewTree(ctx context.Context) (Tree, error) {
	img, err := imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return Tree{}, fmt.Errorf("benchmark tree: %w", err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return Tree{}, fmt.Errorf("benchmark tree: busybox layers: %v", err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return Tree{}, fmt.Errorf("benchmark tree: %w", err)
	}
	base, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return Tree{}, fmt.Errorf("benchmark tree: read busybox layer: %w", err)
	}
	return newTree(base)
}

func newTree(base []byte) (Tree, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Half random, half repeated text: compresses like real binaries.
	content := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			if i%64 < 32 {
				b[i] = byte(rng.Uint32())
			} else {
				b[i] = "abcdefghijklmnopqrstuvwxyz012345"[i%32]
			}
		}
		return b
	}
	small := []imagetest.File{imagetest.Dir("usr", 0o755), imagetest.Dir("usr/share", 0o755)}
	for d := range 60 {
		dir := fmt.Sprintf("usr/share/pkg%02d", d)
		small = append(small, imagetest.Dir(dir, 0o755))
		for f := range 50 {
			small = append(small, imagetest.File{Path: fmt.Sprintf("%s/file%02d.txt", dir, f), Mode: 0o644, Data: content(100 + rng.IntN(8000))})
		}
	}
	large := []imagetest.File{imagetest.Dir("opt", 0o755), imagetest.Dir("opt/app", 0o755)}
	for i := range 24 {
		large = append(large, imagetest.File{Path: fmt.Sprintf("opt/app/lib%02d.so", i), Mode: 0o755, Data: content(256<<10 + rng.IntN(1536<<10))})
	}
	top := []imagetest.File{
		imagetest.Whiteout("usr/share/pkg03"),
		imagetest.OpaqueWhiteout("usr/share/pkg04"),
		imagetest.Regular("usr/share/pkg04/new", 0o644, "new"),
	}
	for i := range 100 {
		top = append(top, imagetest.File{Path: fmt.Sprintf("usr/share/pkg%02d/file%02d.txt", 10+i%40, i%50), Mode: 0o644, Data: content(500)})
	}
	for i := range 50 {
		top = append(top, imagetest.Hardlink(fmt.Sprintf("opt/app/alias%02d", i), fmt.Sprintf("opt/app/lib%02d.so", i%24)))
	}
	t := Tree{Layers: [][]byte{base}}
	for _, files := range [][]imagetest.File{small, large, top} {
		raw, err := imagetest.Tar(files)
		if err != nil {
			return Tree{}, fmt.Errorf("benchmark tree: %w", err)
		}
		t.Layers = append(t.Layers, raw)
	}
	for _, l := range t.Layers {
		n, err := regularBytes(l)
		if err != nil {
			return Tree{}, err
		}
		t.FileBytes += n
	}
	return t, nil
}

// regularBytes sums the sizes of the regular files of a tar stream.
func regularBytes(raw []byte) (int64, error) {
	var n int64
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("benchmark tree: read layer: %w", err)
		}
		if h.Typeflag == tar.TypeReg {
			n += h.Size
		}
	}
}

// V1Layers returns the layers as plain tar blobs (the same bytes mkfs
// reads, extracted) or gzip blobs (what a pulled image holds), served as
// the image store serves stored blobs.
func (t Tree) V1Layers(compressed bool) ([]v1.Layer, error) {
	var out []v1.Layer
	for _, raw := range t.Layers {
		blob, media := raw, types.OCIUncompressedLayer
		if compressed {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			if _, err := zw.Write(raw); err != nil {
				return nil, fmt.Errorf("compress layer: %w", err)
			}
			if err := zw.Close(); err != nil {
				return nil, fmt.Errorf("compress layer: %w", err)
			}
			blob, media = buf.Bytes(), types.OCILayer
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		}, tarball.WithMediaType(media))
		if err != nil {
			return nil, fmt.Errorf("make layer: %w", err)
		}
		out = append(out, l)
	}
	return out, nil
}

// MkfsSize is the image size mkfs.ext4 gets: the file data and half again,
// plus 64 MiB for metadata, in MiB.
func (t Tree) MkfsSize() string {
	return strconv.FormatInt((t.FileBytes*3/2+64<<20)>>20, 10) + "M"
}
