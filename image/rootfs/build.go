package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image/ext4"
	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
)

// Info describes a built image.
type Info struct {
	// Size is the image file's size in bytes.
	Size int64
	// Files counts the names in the image (directories included) other
	// than the root and the lost+found the writer adds.
	Files int
	// Layers is how many layers were applied.
	Layers int
}

// Build applies layers (bottom first) into a new read-only ext4 image at
// dst. The image is written under a temporary name next to dst and renamed
// into place; on any error nothing is left at either name.
func Build(ctx context.Context, layers []v1.Layer, dst string) (info Info, err error) {
	start := time.Now()
	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return Info{}, fmt.Errorf("build %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w, err := ext4.NewWriter(f, ext4.Options{})
	if err != nil {
		return Info{}, fmt.Errorf("build %s: %w", dst, err)
	}
	b := newBuilder(w, layers)
	if b.limit, b.limitWhy, err = expansionLimit(dir); err != nil {
		return Info{}, fmt.Errorf("build %s: %w", dst, err)
	}
	if err := b.run(ctx); err != nil {
		return Info{}, fmt.Errorf("build %s: %w", dst, err)
	}
	if err := w.Close(); err != nil {
		return Info{}, fmt.Errorf("build %s: write image: %w", dst, err)
	}
	// The image is shared by every container of the image from now on:
	// make it durable before it gets its final name.
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("build %s: sync: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("build %s: close: %w", dst, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return Info{}, fmt.Errorf("build %s: %w", dst, err)
	}
	st := w.Stats()
	info = Info{Size: int64(st.Blocks) * 4096, Files: st.Names, Layers: len(layers)}
	slog.DebugContext(ctx, "rootfs built", "path", dst, "layers", info.Layers, "files", info.Files,
		"bytes", info.Size, "elapsed", time.Since(start))
	return info, nil
}

// builder applies layers top-down (see the package doc).
type builder struct {
	w      *ext4.Writer
	layers []v1.Layer
	root   node
	// wants holds hard links waiting for their target from a lower
	// layer, by target path.
	wants map[string][]*want
	// second lists, per layer, hidden regular files that hard links need
	// and whose data had streamed past when the need appeared.
	second map[int][]*layerEntry
	// written counts file data added to the image; limit bounds it (see
	// expansionLimit), limitWhy says where the bound comes from.
	written, limit int64
	limitWhy       string
}

// ErrTooLarge is returned when an image's files would expand past what the
// disk can hold: a gzip "bomb" (a few kilobytes inflating to terabytes)
// fails before it fills the disk.
var ErrTooLarge = errors.New("image too large")

// maxImageBytes bounds an image whatever the free space: the ext4 writer's
// own bound.
const maxImageBytes = 1 << 40

// freeSpaceReserve is kept free on the state root's filesystem: a build
// never takes the last of it (logs, VM disks and the node need it): 5 % of
// the filesystem, at most 256 MiB.
func freeSpaceReserve(size int64) int64 { return min(size/20, 256<<20) }

// expansionLimit is how many bytes of file data an image built in dir may
// hold: the free space of dir's filesystem less a reserve, at most
// maxImageBytes. Tar headers declare each file's size before its data, so
// the bound is checked before anything is written.
func expansionLimit(dir string) (int64, string, error) {
	disk, err := hostinfo.ReadDisk(dir)
	if err != nil {
		return 0, "", fmt.Errorf("free space for the image: %w", err)
	}
	free, size := int64(disk.FreeBytes), int64(disk.TotalBytes)
	if reserve := freeSpaceReserve(size); free-reserve < maxImageBytes {
		return max(free-reserve, 0), fmt.Sprintf("%d bytes free in %s, %d kept in reserve", free, dir, reserve), nil
	}
	return maxImageBytes, "the 1 TiB bound of an image", nil
}

// account adds n bytes of file data, failing once the limit is passed.
func (b *builder) account(n int64) error {
	if n < 0 || b.written+n > b.limit {
		return fmt.Errorf("%w: its files expand to more than %d bytes (%s)", ErrTooLarge, b.limit, b.limitWhy)
	}
	b.written += n
	return nil
}

func newBuilder(w *ext4.Writer, layers []v1.Layer) *builder {
	b := &builder{w: w, layers: layers, wants: map[string][]*want{}, second: map[int][]*layerEntry{}}
	b.root = node{inImage: true, isDir: true}
	return b
}

func (b *builder) run(ctx context.Context) error {
	for num := len(b.layers); num >= 1; num-- {
		if err := b.applyLayer(ctx, num); err != nil {
			return fmt.Errorf("%s: %w", b.layerName(num), err)
		}
	}
	for _, ws := range b.wants {
		for _, w := range ws {
			return fmt.Errorf("%s: entry %q: hard link target %q does not exist in the layers below",
				b.layerName(w.from.layer), w.from.name, w.target)
		}
	}
	for num, entries := range b.second {
		if err := b.rereadLayer(ctx, num, entries); err != nil {
			return fmt.Errorf("%s (second read): %w", b.layerName(num), err)
		}
	}
	return nil
}

// layerName identifies layer num (1 = bottom) in errors.
func (b *builder) layerName(num int) string {
	s := fmt.Sprintf("layer %d of %d", num, len(b.layers))
	if d, err := b.layers[num-1].Digest(); err == nil {
		s += " (" + d.String() + ")"
	}
	return s
}

func (b *builder) applyLayer(ctx context.Context, num int) (err error) {
	s, err := openLayer(ctx, b.layers[num-1])
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ls := newLayerState(num)
	for ord := 0; ; ord++ {
		hdr, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := b.apply(ls, ord, hdr, s.data()); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if err := s.skip(); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	if err := b.endLayer(ls); err != nil {
		return err
	}
	b.root.commit(num, ls.seals)
	return nil
}

// rereadLayer writes the hidden files that hard links turned out to need.
func (b *builder) rereadLayer(ctx context.Context, num int, entries []*layerEntry) (err error) {
	byOrd := map[int]*layerEntry{}
	for _, e := range entries {
		byOrd[e.ord] = e
	}
	s, err := openLayer(ctx, b.layers[num-1])
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	for ord := 0; ; ord++ {
		hdr, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if e := byOrd[ord]; e != nil {
			if hdr.Name != e.hdr.Name {
				return fmt.Errorf("entry %d is %q, was %q on the first read", ord, hdr.Name, e.hdr.Name)
			}
			if err := b.materialize(e, s.data()); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			delete(byOrd, ord)
		}
		if err := s.skip(); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if len(byOrd) > 0 {
		return fmt.Errorf("%d entries seen on the first read are missing", len(byOrd))
	}
	return s.finish()
}
