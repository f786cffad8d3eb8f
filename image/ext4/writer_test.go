package ext4

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// TestTrees writes each test tree, has e2fsck check it, and reads every
// name back with debugfs: type, permissions, owner, size, times, link
// count, symlink target, device numbers, xattrs and content.
// slowTrees are read back by TestTrees only in the full suite.
var slowTrees = map[string]bool{"10k entries": true, "large and sparse": true}

func TestTrees(t *testing.T) {
	for name, items := range testTrees() {
		t.Run(name, func(t *testing.T) {
			if slowTrees[name] {
				testenv.Needs(t, "about 10 s of debugfs reading back a large tree")
			}
			t.Parallel()
			img := writeTree(t, items, Options{})
			ext4test.Fsck(t, img)
			checkWithDebugfs(t, img, items)
		})
	}
}

func checkWithDebugfs(t *testing.T, img string, items []item) {
	want := expectTree(items)
	got := ext4test.Inspect(t, img)
	for p := range want {
		if got[p] == nil {
			t.Errorf("%s missing from the image", p)
		}
	}
	var contentInos []uint64
	contentPath := map[uint64]string{}
	for p, n := range got {
		if p == "/lost+found" {
			continue
		}
		w := want[p]
		if w == nil {
			t.Errorf("unexpected %s in the image", p)
			continue
		}
		checkNode(t, p, n, w)
		if _, seen := contentPath[n.Ino]; !seen && w.sum != ([32]byte{}) {
			contentInos = append(contentInos, n.Ino)
			contentPath[n.Ino] = p
		}
	}
	for ino, data := range ext4test.ReadFiles(t, img, contentInos) {
		p := contentPath[ino]
		if sumOf(data) != want[p].sum {
			t.Errorf("%s: content differs (%d bytes read)", p, len(data))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func checkNode(t *testing.T, p string, n *ext4test.Node, w *expected) {
	e := w.it.e
	typeBits := map[FileType]uint32{TypeRegular: ext4test.ModeRegular, TypeDir: ext4test.ModeDir,
		TypeSymlink: ext4test.ModeSymlink, TypeCharDevice: ext4test.ModeChar, TypeBlockDevice: ext4test.ModeBlock,
		TypeFifo: ext4test.ModeFifo, TypeSocket: ext4test.ModeSocket}[e.Type]
	if n.Mode != typeBits|e.Mode {
		t.Errorf("%s: mode %o, want %o", p, n.Mode, typeBits|e.Mode)
	}
	if n.UID != e.UID || n.GID != e.GID {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, n.UID, n.GID, e.UID, e.GID)
	}
	links := w.links
	if e.Type == TypeDir {
		links = 2 + w.subdirs
	}
	if n.Links != links {
		t.Errorf("%s: %d links, want %d", p, n.Links, links)
	}
	switch e.Type {
	case TypeRegular:
		if n.Size != e.Size {
			t.Errorf("%s: size %d, want %d", p, n.Size, e.Size)
		}
	case TypeSymlink:
		if n.Size != int64(len(e.LinkTarget)) {
			t.Errorf("%s: size %d, want %d", p, n.Size, len(e.LinkTarget))
		}
		if len(e.LinkTarget) < inodeBlockLen && n.Target != e.LinkTarget {
			t.Errorf("%s: target %q, want %q", p, n.Target, e.LinkTarget)
		}
	case TypeCharDevice, TypeBlockDevice:
		if n.Major != e.DevMajor || n.Minor != e.DevMinor {
			t.Errorf("%s: device %d:%d, want %d:%d", p, n.Major, n.Minor, e.DevMajor, e.DevMinor)
		}
	}
	if p != "/" {
		for _, tc := range []struct {
			what      string
			got, want time.Time
		}{{"mtime", n.Mtime, e.ModTime}, {"atime", n.Atime, e.AccessTime}, {"ctime", n.Ctime, e.ChangeTime}} {
			if !tc.got.Equal(tc.want) {
				t.Errorf("%s: %s %v, want %v", p, tc.what, tc.got.UTC(), tc.want.UTC())
			}
		}
	}
	var gotX, wantX []string
	for k, v := range n.Xattrs {
		gotX = append(gotX, fmt.Sprintf("%s(%d)", k, v))
	}
	for k, v := range e.Xattrs {
		if strings.HasPrefix(k, "system.posix_acl_") {
			// debugfs lists the size on disk, ext4's shorter format.
			d, _ := aclToDisk(v)
			v = d
		}
		wantX = append(wantX, fmt.Sprintf("%s(%d)", k, len(v)))
	}
	slices.Sort(gotX)
	slices.Sort(wantX)
	if !slices.Equal(gotX, wantX) {
		t.Errorf("%s: xattrs %v, want %v", p, gotX, wantX)
	}
}

// Xattr values as debugfs reads them (it converts ACLs back to the xattr
// format, so they must round-trip).
func TestXattrValues(t *testing.T) {
	items := testTrees()["xattrs"]
	img := writeTree(t, items, Options{})
	tree := ext4test.Inspect(t, img)
	for _, it := range items {
		for name, value := range it.e.Xattrs {
			got := ext4test.Xattr(t, img, tree["/"+it.e.Path].Ino, name)
			if strings.HasPrefix(name, "system.posix_acl") {
				// debugfs writes 0, the kernel -1, as the id of
				// entries that have none.
				got, value = aclIDsCleared(got), aclIDsCleared(value)
			}
			if !bytes.Equal(got, value) {
				t.Errorf("%s %s = %x, want %x", it.e.Path, name, got, value)
			}
		}
	}
	if !tree["/share1"].XattrBlock || !tree["/many"].XattrBlock || tree["/ping"].XattrBlock {
		t.Errorf("xattr placement: share1 %v many %v ping %v, want block, block, inode",
			tree["/share1"].XattrBlock, tree["/many"].XattrBlock, tree["/ping"].XattrBlock)
	}
	// share1 and share2 use the same block.
	out := ext4test.Debugfs(t, img, []string{"stat /share1", "stat /share2"})
	acl := func(s string) string { return s[strings.Index(s, "File ACL:"):][:20] }
	if acl(out[0]) != acl(out[1]) {
		t.Errorf("identical xattrs not shared: %q vs %q", acl(out[0]), acl(out[1]))
	}
}

func aclIDsCleared(v []byte) []byte {
	v = bytes.Clone(v)
	for e := v[4:]; len(e) >= 8; e = e[8:] {
		if tag := le.Uint16(e); tag != aclUser && tag != aclGroup {
			le.PutUint32(e[4:], 0)
		}
	}
	return v
}

func TestExtentTreeDepth(t *testing.T) {
	items := testTrees()["large and sparse"]
	img := writeTree(t, items, Options{})
	tree := ext4test.Inspect(t, img)
	if n := tree["/sparse"]; n.Extents != 2000 || n.Depth != 2 {
		t.Errorf("/sparse: %d extents at depth %d, want 2000 at depth 2", n.Extents, n.Depth)
	}
	if n := tree["/big"]; n.Depth != 1 {
		t.Errorf("/big: %d extents at depth %d, want depth 1", n.Extents, n.Depth)
	}
}

// A compact image is about the size of its data, and the superblock says
// what the package doc promises.
func TestCompactImage(t *testing.T) {
	items := testTrees()["large and sparse"]
	img := writeTree(t, items, Options{})
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	// Data: 200 MiB minus 50 holes of 64 KiB, 2000 + 300 blocks of islands.
	data := int64(200<<20-50*64<<10) + 2300*blockSize
	if fi.Size() < data || fi.Size() > data+data/50 {
		t.Errorf("image is %d bytes for %d bytes of data", fi.Size(), data)
	}
	sb := ext4test.Superblock(t, img)
	for _, f := range []string{"ext_attr", "filetype", "extent", "flex_bg", "sparse_super", "large_file",
		"huge_file", "dir_nlink", "extra_isize", "read-only"} {
		if !slices.Contains(strings.Fields(sb["Filesystem features"]), f) {
			t.Errorf("feature %s missing: %q", f, sb["Filesystem features"])
		}
	}
	if sb["Inode size"] != "256" || sb["Block size"] != "4096" {
		t.Errorf("inode size %s, block size %s", sb["Inode size"], sb["Block size"])
	}
}

func TestReplaceAndRemove(t *testing.T) {
	img := func(build func(w *Writer)) string {
		t.Helper()
		p := t.TempDir() + "/img"
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := NewWriter(f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		build(w)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		ext4test.Fsck(t, p)
		return p
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	big := func() item { return islandItem("d/big", 8<<20, func(int64) bool { return true }) }
	p := img(func(w *Writer) {
		must(w.Add(dirItem("d", 0o755).e, nil))
		must(w.Add(big().e, big().reader()))
		must(w.Add(fileItem("d/keep", 0o644, "keep").e, strings.NewReader("keep")))
		must(w.Add(dirItem("d/sub", 0o700).e, nil))
		must(w.Add(fileItem("d/sub/f", 0o644, "f").e, strings.NewReader("f")))
		// Replace the big file with a symlink, then drop the sub tree.
		must(w.Add(symlinkItem("d/big", "keep").e, nil))
		must(w.Remove("d/sub"))
		// A directory over a directory only updates its metadata.
		must(w.Add(Entry{Path: "d", Type: TypeDir, Mode: 0o711, UID: 7}, nil))
		// A failed replacement keeps the old file.
		if err := w.Add(fileItem("d/keep", 0o644, "").e, strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(Entry{Path: "d/keep", Type: TypeRegular, Size: 100}, strings.NewReader("short")); !errors.Is(err, ErrShortData) {
			t.Fatalf("short replacement: %v", err)
		}
		// A second 8 MiB file reuses the freed blocks.
		b2 := islandItem("d/big2", 8<<20, func(int64) bool { return true })
		must(w.Add(b2.e, b2.reader()))
		if typ, ok := w.Lookup("d/big"); !ok || typ != TypeSymlink {
			t.Errorf("Lookup d/big: %v %v", typ, ok)
		}
	})
	tree := ext4test.Inspect(t, p)
	if tree["/d/sub"] != nil || tree["/d/sub/f"] != nil || tree["/d/big"].Target != "keep" ||
		tree["/d"].Mode != ext4test.ModeDir|0o711 || tree["/d"].UID != 7 || tree["/d/keep"] == nil {
		t.Errorf("tree after replace/remove: %+v %+v", tree["/d"], tree["/d/big"])
	}
	fi, _ := os.Stat(p)
	if fi.Size() > 9<<20 {
		t.Errorf("image %d bytes: freed blocks were not reused", fi.Size())
	}
}

// A fixed-size filesystem may also start with content; the kernel can
// then write to it.
func TestFixedSizeWithContent(t *testing.T) {
	items := testTrees()["hard links"]
	img := writeTree(t, items, Options{Size: 64 << 20, Label: "scratch"})
	ext4test.Fsck(t, img)
	checkWithDebugfs(t, img, items)
	if sb := ext4test.Superblock(t, img); sb["Filesystem volume name"] != "scratch" || sb["Block count"] != "16384" {
		t.Errorf("label %q, blocks %q", sb["Filesystem volume name"], sb["Block count"])
	}
	f, err := os.Create(t.TempDir() + "/small")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	big := islandItem("big", 2<<20, func(int64) bool { return true })
	if err := w.Add(big.e, big.reader()); !errors.Is(err, ErrNoSpace) {
		t.Errorf("2 MiB into 1 MiB: %v", err)
	}
}

func TestInvalidEntries(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Entry{Path: "dir", Type: TypeDir, Mode: 0o755}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Entry{Path: "file", Type: TypeRegular, Size: 1}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		e    Entry
		data string
		want error
	}{
		{Entry{Path: "../x", Type: TypeRegular}, "", ErrInvalid},
		{Entry{Path: "a/./b", Type: TypeRegular}, "", ErrInvalid},
		{Entry{Path: strings.Repeat("n", 256), Type: TypeRegular}, "", ErrInvalid},
		{Entry{Path: "nul\x00", Type: TypeRegular}, "", ErrInvalid},
		{Entry{Path: "missing/x", Type: TypeRegular}, "", ErrNotExist},
		{Entry{Path: "file/x", Type: TypeRegular}, "", ErrNotDir},
		{Entry{Path: "mode", Type: TypeRegular, Mode: 0o170644}, "", ErrInvalid},
		{Entry{Path: "short", Type: TypeRegular, Size: 10}, "abc", ErrShortData},
		{Entry{Path: "long", Type: TypeRegular, Size: 1}, "abc", ErrLongData},
		{Entry{Path: "s", Type: TypeSymlink}, "", ErrInvalid},
		{Entry{Path: "s", Type: TypeSymlink, LinkTarget: strings.Repeat("t", 4096)}, "", ErrInvalid},
		{Entry{Path: "l", Type: TypeHardLink, LinkTarget: "dir"}, "", ErrIsDir},
		{Entry{Path: "l", Type: TypeHardLink, LinkTarget: "nothing"}, "", ErrNotExist},
		{Entry{Path: "d", Type: TypeCharDevice, DevMajor: 4096}, "", ErrInvalid},
		{Entry{Path: "x", Type: TypeRegular, Xattrs: map[string][]byte{"os2.x": nil}}, "", ErrInvalid},
		{Entry{Path: "x", Type: TypeRegular, Xattrs: map[string][]byte{"user.": nil}}, "", ErrInvalid},
		{Entry{Path: "x", Type: TypeRegular, Xattrs: map[string][]byte{"user.x": make([]byte, 5000)}}, "", ErrTooLarge},
		{Entry{Path: "x", Type: TypeRegular, Xattrs: map[string][]byte{"system.posix_acl_access": {1, 2, 3}}}, "", ErrInvalid},
		{Entry{Path: "", Type: TypeRegular}, "", ErrInvalid},
	} {
		err := w.Add(tc.e, strings.NewReader(tc.data))
		if !errors.Is(err, tc.want) {
			t.Errorf("Add %q (%v): %v, want %v", tc.e.Path, tc.e.Type, err, tc.want)
		}
	}
	// Failed adds leave nothing behind and the writer usable.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ext4test.Fsck(t, f.Name())
	tree := ext4test.Inspect(t, f.Name())
	if len(tree) != 4 { // root, lost+found, dir, file
		t.Errorf("tree after failed adds has %d names", len(tree))
	}
	if err := w.Add(Entry{Path: "late", Type: TypeDir}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

// diskUsage is the space a (sparse) file really takes.
func diskUsage(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestCreateEmpty(t *testing.T) {
	for _, size := range []int64{4 << 20, 300 << 20, 10 << 30} {
		t.Run(fmt.Sprint(size>>20, "MiB"), func(t *testing.T) {
			p := t.TempDir() + "/scratch.ext4"
			if err := CreateEmpty(p, size); err != nil {
				t.Fatal(err)
			}
			ext4test.Fsck(t, p)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() > size || fi.Size() < size-size/100 {
				t.Errorf("size %d, asked for %d", fi.Size(), size)
			}
			sb := ext4test.Superblock(t, p)
			if strings.Contains(sb["Filesystem features"], "read-only") || !strings.Contains(sb["Filesystem features"], "dir_index") {
				t.Errorf("features %q", sb["Filesystem features"])
			}
			tree := ext4test.Inspect(t, p)
			if len(tree) != 2 || tree["/lost+found"].Size != 4*blockSize {
				t.Errorf("tree %v", tree)
			}
			if used := diskUsage(t, p); used > 2<<20+size/200 {
				t.Errorf("a fresh %d-byte disk uses %d bytes: not sparse", size, used)
			}
		})
	}
	if err := CreateEmpty(t.TempDir()+"/tiny", 64<<10); !errors.Is(err, ErrNoSpace) {
		t.Errorf("CreateEmpty 64 KiB: %v", err)
	}
}

func TestCreateEmptyVolumeRootMode(t *testing.T) {
	p := t.TempDir() + "/vol.ext4"
	if err := CreateEmptyVolume(p, 8<<20, 0o777); err != nil {
		t.Fatal(err)
	}
	ext4test.Fsck(t, p)
	out := ext4test.Debugfs(t, p, []string{"stat /"})[0]
	if !strings.Contains(out, "Mode:  0777") && !strings.Contains(out, "Mode: 0777") {
		t.Errorf("root of an emptyDir volume is not 0777:\n%s", out)
	}
	if err := CreateEmptyVolume(p+"2", 8<<20, 0o10777); !errors.Is(err, ErrInvalid) {
		t.Errorf("mode beyond 07777: %v", err)
	}
}
