package ext4

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// item is one entry of a test tree and, for regular files and slow
// symlinks, a way to produce its data again for comparison.
type item struct {
	e    Entry
	data func() io.Reader
}

func (it item) reader() io.Reader {
	if it.data == nil {
		return nil
	}
	return it.data()
}

var (
	tMod    = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	tAccess = time.Date(1965, 7, 8, 9, 10, 11, 987654321, time.UTC) // before 1970
	tChange = time.Date(2100, 1, 2, 3, 4, 5, 600000007, time.UTC)   // needs the epoch bits
)

func meta(e Entry) Entry {
	if e.ModTime.IsZero() {
		e.ModTime, e.AccessTime, e.ChangeTime = tMod, tAccess, tChange
	}
	return e
}

func dirItem(path string, mode uint32) item {
	return item{e: meta(Entry{Path: path, Type: TypeDir, Mode: mode})}
}

func fileItem(path string, mode uint32, content string) item {
	return item{e: meta(Entry{Path: path, Type: TypeRegular, Mode: mode, Size: int64(len(content))}),
		data: func() io.Reader { return strings.NewReader(content) }}
}

func genItem(path string, size int64, data func() io.Reader) item {
	return item{e: meta(Entry{Path: path, Type: TypeRegular, Mode: 0o644, Size: size}), data: data}
}

func linkItem(path, target string) item {
	return item{e: Entry{Path: path, Type: TypeHardLink, LinkTarget: target}}
}

func symlinkItem(path, target string) item {
	return item{e: meta(Entry{Path: path, Type: TypeSymlink, Mode: 0o777, LinkTarget: target})}
}

// islands is a file of size bytes that holds pseudo-random data only where
// data(blockIndex) says so and zeros elsewhere, to make holes and extents.
type islands struct {
	size int64
	data func(block int64) bool
	off  int64
}

func (r *islands) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-r.off))
	for i := 0; i < n; {
		blk := (r.off + int64(i)) / blockSize
		end := min(n, int((blk+1)*blockSize-r.off))
		if r.data(blk) {
			j := i
			for ; j < end && (r.off+int64(j))%8 != 0; j++ {
				pos := uint64(r.off + int64(j))
				p[j] = byte(mix(pos/8) >> (8 * (pos % 8)))
			}
			for ; j+8 <= end; j += 8 {
				binary.LittleEndian.PutUint64(p[j:], mix(uint64(r.off+int64(j))/8))
			}
			for ; j < end; j++ {
				pos := uint64(r.off + int64(j))
				p[j] = byte(mix(pos/8) >> (8 * (pos % 8)))
			}
		} else {
			clear(p[i:end])
		}
		i = end
	}
	r.off += int64(n)
	return n, nil
}

// mix is splitmix64's finalizer: cheap, deterministic noise.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func islandItem(path string, size int64, data func(int64) bool) item {
	return genItem(path, size, func() io.Reader { return &islands{size: size, data: data} })
}

// testTrees are the trees every check runs on.
func testTrees() map[string][]item {
	trees := map[string][]item{"empty": nil}

	deep := []item{}
	p := ""
	for i := range 120 {
		p = filepath.Join(p, fmt.Sprintf("level-%03d", i))
		deep = append(deep, dirItem(p, 0o755))
	}
	deep = append(deep, fileItem(p+"/bottom", 0o600, "at the bottom"))
	trees["deep"] = deep

	wide := []item{dirItem("wide", 0o755)}
	for i := range 10000 {
		wide = append(wide, fileItem(fmt.Sprintf("wide/entry-%05d", i), 0o644, fmt.Sprint(i)))
	}
	trees["10k entries"] = wide

	trees["large and sparse"] = []item{
		// 200 MiB, dense but for a 64 KiB hole every 4 MiB: crosses the
		// superblock backup at the start of group 1 (128 MiB).
		islandItem("big", 200<<20, func(b int64) bool { return b%1024 >= 16 }),
		// 1 GiB apparent, 2000 islands of 4 KiB: 2000 extents need a
		// two-level extent tree.
		islandItem("sparse", 1<<30, func(b int64) bool { return b%128 == 5 && b < 2000*128 }),
		// Islands in the middle of a file with a hole at its end.
		islandItem("tail-hole", 5<<20+123, func(b int64) bool { return b < 300 }),
		islandItem("zeros", 1<<20, func(int64) bool { return false }),
	}

	links := []item{dirItem("a", 0o755), dirItem("b", 0o755), fileItem("a/orig", 0o640, "shared content")}
	for i := range 300 {
		links = append(links, linkItem(fmt.Sprintf("b/link-%03d", i), "a/orig"))
	}
	for i := range 200 {
		links = append(links, fileItem(fmt.Sprintf("a/pair-%03d", i), 0o644, strings.Repeat("p", i)),
			linkItem(fmt.Sprintf("b/pair-%03d", i), fmt.Sprintf("a/pair-%03d", i)))
	}
	links = append(links, symlinkItem("a/sym", "orig"), linkItem("b/sym-link", "a/sym"))
	trees["hard links"] = links

	trees["symlinks"] = []item{
		symlinkItem("s1", "x"),
		symlinkItem("s59", strings.Repeat("a", 59)),
		symlinkItem("s60", strings.Repeat("b", 60)),
		symlinkItem("s61", strings.Repeat("c/", 30)+"d"),
		symlinkItem("s4095", "/"+strings.Repeat("e", 4094)),
		symlinkItem("abs", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
	}

	trees["devices"] = []item{
		{e: meta(Entry{Path: "null", Type: TypeCharDevice, Mode: 0o666, DevMajor: 1, DevMinor: 3})},
		{e: meta(Entry{Path: "sda", Type: TypeBlockDevice, Mode: 0o660, GID: 6, DevMajor: 8, DevMinor: 0})},
		{e: meta(Entry{Path: "big-char", Type: TypeCharDevice, Mode: 0o600, DevMajor: 511, DevMinor: 1048575})},
		{e: meta(Entry{Path: "big-block", Type: TypeBlockDevice, Mode: 0o600, DevMajor: 259, DevMinor: 300})},
		{e: meta(Entry{Path: "fifo", Type: TypeFifo, Mode: 0o620})},
		{e: meta(Entry{Path: "socket", Type: TypeSocket, Mode: 0o755})},
	}

	capV3 := capability()
	bigValue := bytes.Repeat([]byte("v"), 1500)
	trees["xattrs"] = []item{
		withXattrs(fileItem("ping", 0o755, "binary"), map[string][]byte{"security.capability": capV3}),
		withXattrs(fileItem("many", 0o644, "x"), map[string][]byte{
			"user.a": []byte("1"), "user.bb": []byte("22"), "trusted.t": []byte("tt"),
			"security.selinux": []byte("system_u:object_r:bin_t:s0\x00"), "user.big": bigValue,
		}),
		// Same block-resident xattrs: one shared block.
		withXattrs(fileItem("share1", 0o644, "1"), map[string][]byte{"user.big": bigValue}),
		withXattrs(fileItem("share2", 0o644, "2"), map[string][]byte{"user.big": bigValue}),
		withXattrs(dirItem("acl-dir", 0o755), map[string][]byte{
			"system.posix_acl_access":  posixACL(0o7, 1000, 0o5),
			"system.posix_acl_default": posixACL(0o6, 2000, 0o4),
		}),
		withXattrs(symlinkItem("labelled-link", "ping"), map[string][]byte{"security.selinux": []byte("l\x00")}),
		withXattrs(fileItem("empty-value", 0o644, ""), map[string][]byte{"user.empty": nil}),
	}

	trees["names"] = []item{
		fileItem("日本語のファイル", 0o644, "unicode"),
		fileItem("emoji-😀-ü-Ω", 0o644, "emoji"),
		fileItem(strings.Repeat("n", 255), 0o644, "255 ascii"),
		fileItem(strings.Repeat("é", 127)+"x", 0o644, "255 bytes of utf-8"),
		dirItem("sp ace & quote'\"", 0o755),
		fileItem("sp ace & quote'\"/-dash", 0o644, "odd"),
	}

	trees["modes and owners"] = []item{
		fileItem("setuid", 0o4755, "s"),
		fileItem("setgid", 0o2711, "g"),
		dirItem("sticky", 0o1777),
		item{e: meta(Entry{Path: "owned", Type: TypeRegular, Mode: 0o640, UID: 100000, GID: 4294967294}),
			data: func() io.Reader { return strings.NewReader("") }},
		item{e: meta(Entry{Path: "owned-dir", Type: TypeDir, Mode: 0o700, UID: 65536, GID: 65535})},
		item{e: Entry{Path: "epoch", Type: TypeRegular, Mode: 0, ModTime: time.Unix(0, 1), AccessTime: time.Unix(1<<31, 0), ChangeTime: time.Unix(-1<<31, 0)}},
	}
	return trees
}

func withXattrs(it item, x map[string][]byte) item {
	it.e.Xattrs = x
	return it
}

// capability is a VFS_CAP_REVISION_3 security.capability value
// (include/uapi/linux/capability.h): cap_net_raw permitted and effective,
// root uid 1000.
func capability() []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 0x03000000|0x1) // revision 3, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)          // CAP_NET_RAW
	binary.LittleEndian.PutUint32(b[20:], 1000)
	return b
}

// posixACL builds a system.posix_acl_* value in the kernel's xattr format:
// owner, one named user, group, mask, other.
func posixACL(owner uint16, uid uint32, other uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	add := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	add(aclUserObj, owner, 0xFFFFFFFF)
	add(aclUser, 7, uid)
	add(aclGroupObj, 5, 0xFFFFFFFF)
	add(aclMask, 7, 0xFFFFFFFF)
	add(aclOther, other, 0xFFFFFFFF)
	return b
}

// writeTree makes an image of items.
func writeTree(t testing.TB, items []item, opts Options) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "test.ext4")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if err := w.Add(it.e, it.reader()); err != nil {
			t.Fatalf("Add %s: %v", it.e.Path, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return img
}

// expected is what a path should hold after items are added in order.
type expected struct {
	it      item // the entry that made the inode (hard links resolved)
	links   int  // names for non-directories
	subdirs int
	sum     [32]byte
	group   *expected // shared by every name of one inode
}

func expectTree(items []item) map[string]*expected {
	want := map[string]*expected{"/": {it: dirItem("", 0o755)}}
	want["/"].it.e.ModTime = time.Time{}
	for _, it := range items {
		p := "/" + it.e.Path
		if it.e.Type == TypeHardLink {
			target := want["/"+it.e.LinkTarget]
			target.links++
			want[p] = target
			continue
		}
		x := &expected{it: it, links: 1}
		if it.e.Type == TypeRegular || (it.e.Type == TypeSymlink && len(it.e.LinkTarget) >= inodeBlockLen) {
			h := sha256.New()
			if r := it.reader(); r != nil {
				io.Copy(h, r)
			} else {
				io.WriteString(h, it.e.LinkTarget)
			}
			copy(x.sum[:], h.Sum(nil))
		}
		if it.e.Type == TypeDir {
			want[filepath.Dir(p)].subdirs++
		}
		want[p] = x
	}
	want["/"].subdirs++ // lost+found
	return want
}

func sumOf(b []byte) [32]byte { return sha256.Sum256(b) }
