package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// ent is one tar entry of a test layer.
type ent struct {
	hdr  tar.Header
	data string
}

var fixtureTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func hdr(name string, typ byte, mode int64) tar.Header {
	return tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: fixtureTime, Format: tar.FormatPAX}
}

func file(name, data string) ent {
	h := hdr(name, tar.TypeReg, 0o644)
	h.Size = int64(len(data))
	return ent{hdr: h, data: data}
}

func dir(name string) ent { return ent{hdr: hdr(name, tar.TypeDir, 0o755)} }

func dirMode(name string, mode int64, uid int) ent {
	h := hdr(name, tar.TypeDir, mode)
	h.Uid = uid
	return ent{hdr: h}
}

func symlink(name, target string) ent {
	h := hdr(name, tar.TypeSymlink, 0o777)
	h.Linkname = target
	return ent{hdr: h}
}

func hardlink(name, target string) ent {
	h := hdr(name, tar.TypeLink, 0o644)
	h.Linkname = target
	return ent{hdr: h}
}

func whiteout(name string) ent {
	d, b := filepath.Split(name)
	return file(d+whiteoutPrefix+b, "")
}

func opaque(dirName string) ent { return file(dirName+"/"+opaqueMarker, "") }

func tarBytes(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer makes a gzip layer the way an image pulled from a registry has
// them (tarball.LayerFromOpener, as the image store reads blobs).
func layer(t testing.TB, ents ...ent) v1.Layer {
	t.Helper()
	gz := gzipBytes(t, tarBytes(t, ents...))
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// blobLayer serves raw layer bytes, damaged ones included, through
// go-containerregistry's own decompression (partial.CompressedToLayer).
type blobLayer struct{ b []byte }

func (l blobLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.b))
	return h, err
}
func (l blobLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l blobLayer) Size() (int64, error) { return int64(len(l.b)), nil }
func (l blobLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

func rawLayer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := partial.CompressedToLayer(blobLayer{b})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// build runs Build into a fresh directory and checks the image with e2fsck.
func build(t testing.TB, layers ...v1.Layer) (string, Info) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	info, err := Build(context.Background(), layers, img)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	ext4test.Fsck(t, img)
	return img, info
}

// render describes an image's tree, one sorted line per path (lost+found
// left out): type, permissions, owner, and content, target or device;
// further names of a hard-linked inode say which path they share it with.
func render(t testing.TB, img string) string {
	t.Helper()
	tree := ext4test.Inspect(t, img)
	var paths []string
	var regular []uint64
	for p, n := range tree {
		if p == "/lost+found" {
			continue
		}
		paths = append(paths, p)
		if n.Mode&ext4test.ModeType == ext4test.ModeRegular {
			regular = append(regular, n.Ino)
		}
	}
	slices.Sort(paths)
	data := ext4test.ReadFiles(t, img, regular)
	firstName := map[uint64]string{}
	var lines []string
	for _, p := range paths {
		n := tree[p]
		perm := n.Mode &^ ext4test.ModeType
		owner := fmt.Sprintf("%d:%d", n.UID, n.GID)
		var line string
		switch n.Mode & ext4test.ModeType {
		case ext4test.ModeDir:
			line = fmt.Sprintf("%s dir %o %s", p, perm, owner)
		case ext4test.ModeRegular:
			line = fmt.Sprintf("%s file %o %s %q", p, perm, owner, data[n.Ino])
		case ext4test.ModeSymlink:
			target := n.Target
			if target == "" {
				target = string(ext4test.ReadFiles(t, img, []uint64{n.Ino})[n.Ino])
			}
			line = fmt.Sprintf("%s -> %s", p, target)
		case ext4test.ModeChar, ext4test.ModeBlock:
			line = fmt.Sprintf("%s dev %o %s %d:%d", p, n.Mode, owner, n.Major, n.Minor)
		case ext4test.ModeFifo:
			line = fmt.Sprintf("%s fifo %o %s", p, perm, owner)
		default:
			line = fmt.Sprintf("%s mode %o", p, n.Mode)
		}
		if n.Mode&ext4test.ModeType != ext4test.ModeDir {
			if first, ok := firstName[n.Ino]; ok {
				line += " =" + first
			} else {
				firstName[n.Ino] = p
			}
			if n.Links > 1 {
				line += fmt.Sprintf(" links=%d", n.Links)
			}
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func expectTree(t testing.TB, img, want string) {
	t.Helper()
	got := render(t, img)
	want = strings.TrimSpace(want)
	var wl []string
	for _, l := range strings.Split(want, "\n") {
		wl = append(wl, strings.TrimSpace(l))
	}
	if got != strings.Join(wl, "\n") {
		t.Fatalf("image tree:\n%s\n\nwant:\n%s", got, strings.Join(wl, "\n"))
	}
}

func noFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists after a failed build (err %v)", path, err)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp"))
	if len(matches) > 0 {
		t.Fatalf("temporary files left behind: %v", matches)
	}
}

// busyboxLayer is a real-ish base layer: Debian's static busybox with a
// symlink for every applet, the way busybox images are laid out.
func busyboxLayer(t testing.TB) (v1.Layer, []byte, []string) {
	t.Helper()
	ents, data, applets := busyboxLayerEntries(t)
	return layer(t, ents...), data, applets
}

func busyboxLayerEntries(t testing.TB) ([]ent, []byte, []string) {
	t.Helper()
	const bin = "/bin/busybox"
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("read %s: %v (apt-get install busybox-static)", bin, err)
	}
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		t.Fatalf("%s --list-full: %v (apt-get install busybox-static)", bin, err)
	}
	applets := strings.Fields(string(out))
	dirs := map[string]bool{}
	ents := []ent{dir("bin")}
	busybox := file("bin/busybox", string(data))
	busybox.hdr.Mode = 0o755
	ents = append(ents, busybox)
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		for d := filepath.Dir(a); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var ds []string
	for d := range dirs {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	for _, d := range ds {
		if d != "bin" {
			ents = append(ents, dir(d))
		}
	}
	for _, a := range applets {
		if a != "bin/busybox" {
			ents = append(ents, symlink(a, "/bin/busybox"))
		}
	}
	return ents, data, applets
}
