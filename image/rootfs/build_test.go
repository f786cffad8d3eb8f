package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

func TestWhiteoutsAcrossThreeLayers(t *testing.T) {
	l1 := layer(t,
		dir("etc"), file("etc/a", "a1"), file("etc/b", "b1"), file("etc/c", "c1"),
		dir("var"), dir("var/lib"), file("var/lib/x", "x1"), dir("opt"), file("opt/keep", "k"),
	)
	l2 := layer(t,
		whiteout("etc/a"), file("etc/b", "b2"), whiteout("var/lib"), file("etc/new", "n2"),
		// A whiteout does not hide an entry of its own layer.
		file("opt/same", "s2"), whiteout("opt/same"),
	)
	l3 := layer(t,
		file("etc/a", "a3"), whiteout("etc/b"), dir("var/lib"), file("var/lib/y", "y3"), whiteout("etc/new"),
	)
	img, info := build(t, l1, l2, l3)
	expectTree(t, img, `
		/ dir 755 0:0
		/etc dir 755 0:0
		/etc/a file 644 0:0 "a3"
		/etc/c file 644 0:0 "c1"
		/opt dir 755 0:0
		/opt/keep file 644 0:0 "k"
		/opt/same file 644 0:0 "s2"
		/var dir 755 0:0
		/var/lib dir 755 0:0
		/var/lib/y file 644 0:0 "y3"
	`)
	if info.Layers != 3 || info.Files != 9 || info.Size <= 0 {
		t.Fatalf("info %+v, want 3 layers, 9 files", info)
	}
}

func TestOpaqueDirectories(t *testing.T) {
	l1 := layer(t,
		dir("a"), file("a/x", "x1"), dir("a/sub"), file("a/sub/y", "y1"),
		dir("b"), file("b/z", "z1"),
	)
	l2 := layer(t,
		dirMode("a", 0o700, 5), opaque("a"), file("a/n", "n2"),
		file("b/w", "w2"),
	)
	// No entry for "a" itself: its metadata comes from layer 2.
	l3 := layer(t, file("a/m", "m3"))
	img, _ := build(t, l1, l2, l3)
	expectTree(t, img, `
		/ dir 755 0:0
		/a dir 700 5:0
		/a/m file 644 0:0 "m3"
		/a/n file 644 0:0 "n2"
		/b dir 755 0:0
		/b/w file 644 0:0 "w2"
		/b/z file 644 0:0 "z1"
	`)
}

func TestOpaqueRoot(t *testing.T) {
	l1 := layer(t, dir("a"), file("a/x", "x1"), file("top", "t1"))
	l2 := layer(t, dirMode("./", 0o750, 0), opaque("."), file("only", "o2"))
	img, _ := build(t, l1, l2)
	expectTree(t, img, `
		/ dir 750 0:0
		/only file 644 0:0 "o2"
	`)
}

func TestHardLinksAcrossLayers(t *testing.T) {
	l1 := layer(t,
		dir("bin"), file("bin/busybox", "BB"), hardlink("bin/sh", "bin/busybox"),
		dir("etc"), file("etc/passwd", "p1"),
		dir("data"), file("data/orig", "O1"),
	)
	l2 := layer(t,
		hardlink("bin/ls", "bin/busybox"), // target in the layer below
		file("data/orig", "O2"),
		hardlink("data/copy", "data/orig"), // target replaced in this layer
	)
	l3 := layer(t,
		whiteout("bin/busybox"),           // the names linked to it keep the inode
		hardlink("etc/pw2", "etc/passwd"), // two layers down
	)
	img, _ := build(t, l1, l2, l3)
	expectTree(t, img, `
		/ dir 755 0:0
		/bin dir 755 0:0
		/bin/ls file 644 0:0 "BB" links=2
		/bin/sh file 644 0:0 "BB" =/bin/ls links=2
		/data dir 755 0:0
		/data/copy file 644 0:0 "O2" links=2
		/data/orig file 644 0:0 "O2" =/data/copy links=2
		/etc dir 755 0:0
		/etc/passwd file 644 0:0 "p1" links=2
		/etc/pw2 file 644 0:0 "p1" =/etc/passwd links=2
	`)
}

// A link to a file of its own layer that a higher layer replaced: the old
// content survives under the link's name (read again from the layer).
func TestHardLinkToHiddenFileOfSameLayer(t *testing.T) {
	l1 := layer(t, file("a", "A1"), hardlink("b", "a"), hardlink("c", "a"), symlink("s", "a"), hardlink("s2", "s"))
	l2 := layer(t, file("a", "A2"), whiteout("s"))
	img, _ := build(t, l1, l2)
	expectTree(t, img, `
		/ dir 755 0:0
		/a file 644 0:0 "A2"
		/b file 644 0:0 "A1" links=2
		/c file 644 0:0 "A1" =/b links=2
		/s2 -> a
	`)
}

func TestHardLinkChainThroughLayers(t *testing.T) {
	l1 := layer(t, file("a", "A"))
	l2 := layer(t, hardlink("b", "a"))
	l3 := layer(t, hardlink("c", "b"), whiteout("a"))
	img, _ := build(t, l1, l2, l3)
	expectTree(t, img, `
		/ dir 755 0:0
		/b file 644 0:0 "A" links=2
		/c file 644 0:0 "A" =/b links=2
	`)
}

func TestReplacedFileTypes(t *testing.T) {
	l1 := layer(t,
		dir("x"), file("x/f", "f1"), // dir → file → symlink
		symlink("y", "/etc"),                         // symlink → dir
		file("z", "z1"),                              // file → dir
		dir("w"), file("w/k", "k1"), file("w", "w1"), // dir → file within a layer
	)
	l2 := layer(t, file("x", "file2"), dir("y"), file("y/f", "yf"), dir("z"), file("z/q", "q2"))
	l3 := layer(t, symlink("x", "target"))
	img, _ := build(t, l1, l2, l3)
	expectTree(t, img, `
		/ dir 755 0:0
		/w file 644 0:0 "w1"
		/x -> target
		/y dir 755 0:0
		/y/f file 644 0:0 "yf"
		/z dir 755 0:0
		/z/q file 644 0:0 "q2"
	`)
}

func TestMetadataXattrsAndDevices(t *testing.T) {
	capValue := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	ping := file("bin/ping", "ping-binary")
	ping.hdr.Mode = 0o4755
	ping.hdr.Uid, ping.hdr.Gid = 100000, 70000
	ping.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": capValue,
		"SCHILY.xattr.user.comment":        "hello",
	}
	null := ent{hdr: hdr("dev/null", tar.TypeChar, 0o666)}
	null.hdr.Devmajor, null.hdr.Devminor = 1, 3
	loop := ent{hdr: hdr("dev/loop0", tar.TypeBlock, 0o660)}
	loop.hdr.Devmajor, loop.hdr.Devminor, loop.hdr.Gid = 7, 0, 6
	fifo := ent{hdr: hdr("run/initctl", tar.TypeFifo, 0o600)}
	l1 := layer(t, dirMode("bin", 0o700, 1), dir("dev"), dir("run"), dirMode("tmp", 0o1777, 0))
	l2 := layer(t, dirMode("bin", 0o755, 2), ping, null, loop, fifo,
		file("dup", "first"), file("dup", "second")) // the later entry of a layer wins
	img, _ := build(t, l1, l2)
	expectTree(t, img, `
		/ dir 755 0:0
		/bin dir 755 2:0
		/bin/ping file 4755 100000:70000 "ping-binary"
		/dev dir 755 0:0
		/dev/loop0 dev 60660 0:6 7:0
		/dev/null dev 20666 0:0 1:3
		/dup file 644 0:0 "second"
		/run dir 755 0:0
		/run/initctl fifo 600 0:0
		/tmp dir 1777 0:0
	`)
	tree := ext4test.Inspect(t, img)
	n := tree["/bin/ping"]
	if got := ext4test.Xattr(t, img, n.Ino, "security.capability"); string(got) != capValue {
		t.Errorf("security.capability = %q", got)
	}
	if got := ext4test.Xattr(t, img, n.Ino, "user.comment"); string(got) != "hello" {
		t.Errorf("user.comment = %q", got)
	}
	if !n.Mtime.Equal(fixtureTime) || !n.Atime.Equal(fixtureTime) {
		t.Errorf("times %v %v, want %v", n.Mtime, n.Atime, fixtureTime)
	}
}

func TestCancelledBuildLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "rootfs.ext4")
	if _, err := Build(ctx, []v1.Layer{layer(t, file("a", "b"))}, dst); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a cancelled context: %v", err)
	}
	noFile(t, dst)
}

// Links to hidden nodes that are not regular files: written from the
// header when the layer ends.
func TestHardLinksToHiddenNodes(t *testing.T) {
	dev := ent{hdr: hdr("dev/x", tar.TypeChar, 0o600)}
	dev.hdr.Devmajor, dev.hdr.Devminor = 10, 200
	l1 := layer(t, dir("dev"), dev, hardlink("dev/y", "dev/x"), symlink("s", "target"), hardlink("t", "s"),
		file("empty", ""), hardlink("empty2", "empty"))
	l2 := layer(t, whiteout("dev/x"), whiteout("s"), whiteout("empty"))
	img, _ := build(t, l1, l2)
	expectTree(t, img, `
		/ dir 755 0:0
		/dev dir 755 0:0
		/dev/y dev 20600 0:0 10:200
		/empty2 file 644 0:0 ""
		/t -> target
	`)
}
