package rootfs

import (
	"bytes"
	"testing"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

func TestBusyboxImage(t *testing.T) {
	base, binary, applets := busyboxLayer(t)
	etc := layer(t, dir("etc"), file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), dir("root"))
	img, info := build(t, base, etc)
	tree := ext4test.Inspect(t, img)
	bb := tree["/bin/busybox"]
	if bb == nil || bb.Mode != ext4test.ModeRegular|0o755 || bb.Size != int64(len(binary)) {
		t.Fatalf("/bin/busybox: %+v", bb)
	}
	if got := ext4test.ReadFiles(t, img, []uint64{bb.Ino})[bb.Ino]; !bytes.Equal(got, binary) {
		t.Fatalf("/bin/busybox content differs (%d bytes, want %d)", len(got), len(binary))
	}
	links := 0
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		n := tree["/"+a]
		if n == nil || n.Mode&ext4test.ModeType != ext4test.ModeSymlink || n.Target != "/bin/busybox" {
			t.Fatalf("applet /%s: %+v", a, n)
		}
		links++
	}
	if links < 200 {
		t.Fatalf("only %d applet symlinks", links)
	}
	if info.Files != len(tree)-2 { // minus the root and lost+found
		t.Fatalf("Info.Files %d, image has %d names", info.Files, len(tree)-2)
	}
	// Compact: the binary plus a little metadata, not a preallocated disk.
	if max := int64(len(binary)) + 1<<20; info.Size > max {
		t.Fatalf("image is %d bytes, want at most %d", info.Size, max)
	}
	t.Logf("busybox image: %d bytes, %d files", info.Size, info.Files)
}
