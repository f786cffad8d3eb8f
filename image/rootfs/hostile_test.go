package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// mustFail builds layers, expects an error mentioning every one of want,
// and checks that nothing is left at the destination.
func mustFail(t *testing.T, layers []v1.Layer, want ...string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rootfs.ext4")
	_, err := Build(context.Background(), layers, dst)
	if err == nil {
		t.Fatalf("Build succeeded, want an error mentioning %q", want)
	}
	t.Logf("error: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
	noFile(t, dst)
}

func TestHostileNames(t *testing.T) {
	base := layer(t, dir("etc"), file("etc/passwd", "root"))
	for _, tc := range []struct {
		name  string
		entry ent
		want  string
	}{
		{"dotdot", file("../../tmp/x", "evil"), "leaves the tree"},
		{"dotdot inside", file("etc/../../x", "evil"), "leaves the tree"},
		{"absolute", file("/etc/shadow", "evil"), "absolute path"},
		{"link outside", hardlink("etc/l", "../../etc/passwd"), "leaves the tree"},
		{"link absolute", hardlink("etc/l", "/etc/passwd"), "absolute path"},
		{"link missing", hardlink("etc/l", "etc/nothing"), `hard link target "etc/nothing" does not exist`},
		{"link to dir", hardlink("etc/l", "etc"), "hard link"},
		{"whiteout dotdot", file("etc/.wh..", ""), "whiteout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, []v1.Layer{base, layer(t, tc.entry)}, "layer 2 of 2", "sha256:", tc.entry.hdr.Name, tc.want)
		})
	}
}

func TestHostileWriteThroughSymlink(t *testing.T) {
	t.Run("same layer", func(t *testing.T) {
		mustFail(t, []v1.Layer{layer(t, symlink("lnk", "/etc"), file("lnk/passwd", "evil"))},
			"layer 1 of 1", `"lnk/passwd"`, `parent "lnk" is a symlink`)
	})
	t.Run("across layers", func(t *testing.T) {
		mustFail(t, []v1.Layer{
			layer(t, symlink("lnk", "../../../../etc")),
			layer(t, file("lnk/passwd", "evil")),
		}, "layer 1 of 2", `"lnk"`, "layer 2 of 2", `"lnk/passwd"`)
	})
	t.Run("deep across layers", func(t *testing.T) {
		mustFail(t, []v1.Layer{
			layer(t, dir("a"), symlink("a/b", "/")),
			layer(t, dir("x")),
			layer(t, file("a/b/c/d", "evil")),
		}, "layer 1 of 3", `"a/b"`, `"a/b/c/d"`)
	})
	t.Run("regular file as parent", func(t *testing.T) {
		mustFail(t, []v1.Layer{layer(t, file("f", "x")), layer(t, file("f/g", "evil"))},
			"layer 1 of 2", `"f"`, `"f/g"`)
	})
	t.Run("hard link through symlink", func(t *testing.T) {
		mustFail(t, []v1.Layer{
			layer(t, dir("etc"), file("etc/passwd", "root"), symlink("lnk", "etc")),
			layer(t, hardlink("p", "lnk/passwd")),
		}, "layer 2 of 2", `"p"`, `"lnk/passwd" does not exist`)
	})
}

// A symlink replaced by a directory in a higher layer is no longer in the
// way: this is legitimate and must build.
func TestSymlinkReplacedByDirectoryIsFine(t *testing.T) {
	img, _ := build(t,
		layer(t, symlink("lnk", "/etc")),
		layer(t, whiteout("lnk"), file("lnk/f", "ok")),
	)
	expectTree(t, img, `
		/ dir 755 0:0
		/lnk dir 755 0:0
		/lnk/f file 644 0:0 "ok"
	`)
}

func TestHostileStreams(t *testing.T) {
	good := tarBytes(t, dir("etc"), file("etc/passwd", strings.Repeat("root:x:0:0\n", 500)), file("etc/group", "g"))
	gz := gzipBytes(t, good)

	// An archive cut right after a complete entry: archive/tar alone
	// would report a clean end.
	cut := tarBytes(t, dir("etc"), file("etc/passwd", "root"))
	cut = cut[:len(cut)-1024]

	corruptHdr := bytes.Clone(good)
	corruptHdr[148] ^= 0x07 // the first header's checksum field

	flipped := bytes.Clone(gz)
	flipped[len(flipped)/2] ^= 0xFF

	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-6] ^= 0x01 // gzip trailer CRC32

	for _, tc := range []struct {
		name string
		blob []byte
		want string
	}{
		{"truncated gzip", gz[:len(gz)/2], "unexpected EOF"},
		{"corrupt gzip", flipped, "layer 1 of 1"},
		{"gzip checksum", badCRC, "checksum"},
		{"tar without end", cut, "end-of-archive"},
		{"tar cut mid-entry", good[:len(good)/2], "data shorter than size"},
		{"corrupt tar header", corruptHdr, "header"},
		{"tar with one zero block", append(bytes.Clone(cut), make([]byte, 512)...), "end-of-archive"},
		{"data after end of archive", append(bytes.Clone(good), []byte("trailing")...), "after the tar end-of-archive"},
		{"gzip data after end of archive", gzipBytes(t, append(bytes.Clone(good), 1, 2, 3)), "after the tar end-of-archive"},
		{"garbage after gzip member", append(bytes.Clone(gz), []byte("garbage!")...), "layer 1 of 1"},
		{"empty stream", nil, "end-of-archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, []v1.Layer{rawLayer(t, tc.blob)}, "layer 1 of 1", tc.want)
		})
	}
	// The same streams pass when intact, and zero padding after the end
	// of the archive (tar's record size) is fine.
	padded := append(bytes.Clone(good), make([]byte, 10240)...)
	for _, blob := range [][]byte{good, gz, padded, gzipBytes(t, padded)} {
		build(t, rawLayer(t, blob))
	}
}

// A hostile layer after good ones fails the whole build: the image is not
// left half-made.
func TestHostileLayerOnTopOfGoodOnes(t *testing.T) {
	mustFail(t, []v1.Layer{
		layer(t, dir("etc"), file("etc/passwd", "root")),
		layer(t, file("ok", "fine")),
		rawLayer(t, tarBytes(t, ent{hdr: tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}})),
	}, "layer 3 of 3", "../escape")
}
