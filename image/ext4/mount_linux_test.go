package ext4

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// TestTreesMounted has the kernel mount each test tree read-only and
// compares a full walk with what was written: types, modes, owners, link
// counts, device numbers, times, xattrs (POSIX ACLs as the kernel returns
// them) and content.
func TestTreesMounted(t *testing.T) {
	testenv.NeedsRoot(t, "loop-device mounts")
	for name, items := range testTrees() {
		t.Run(name, func(t *testing.T) {
			img := writeTree(t, items, Options{})
			mnt := ext4test.Mount(t, img, false)
			checkMounted(t, mnt, items)
		})
	}
}

func checkMounted(t *testing.T, mnt string, items []item) {
	want := expectTree(items)
	seen := map[string]bool{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, mnt), "/")
		if rel == "/lost+found" {
			return fs.SkipDir
		}
		seen[rel] = true
		w := want[rel]
		if w == nil {
			t.Errorf("unexpected %s", rel)
			return nil
		}
		checkMountedNode(t, p, rel, w)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s missing from the mounted tree", p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func checkMountedNode(t *testing.T, p, rel string, w *expected) {
	e := w.it.e
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	typeBits := map[FileType]uint32{TypeRegular: unix.S_IFREG, TypeDir: unix.S_IFDIR, TypeSymlink: unix.S_IFLNK,
		TypeCharDevice: unix.S_IFCHR, TypeBlockDevice: unix.S_IFBLK, TypeFifo: unix.S_IFIFO, TypeSocket: unix.S_IFSOCK}[e.Type]
	if st.Mode != typeBits|e.Mode {
		t.Errorf("%s: mode %o, want %o", rel, st.Mode, typeBits|e.Mode)
	}
	if st.Uid != e.UID || st.Gid != e.GID {
		t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, e.UID, e.GID)
	}
	links := uint64(w.links)
	if e.Type == TypeDir {
		links = uint64(2 + w.subdirs)
	}
	if uint64(st.Nlink) != links {
		t.Errorf("%s: nlink %d, want %d", rel, st.Nlink, links)
	}
	if rel != "/" {
		for _, tc := range []struct {
			what string
			got  unix.Timespec
			want time.Time
		}{{"mtime", st.Mtim, e.ModTime}, {"atime", st.Atim, e.AccessTime}, {"ctime", st.Ctim, e.ChangeTime}} {
			if got := time.Unix(tc.got.Unix()); !got.Equal(tc.want) {
				t.Errorf("%s: %s %v, want %v", rel, tc.what, got.UTC(), tc.want.UTC())
			}
		}
	}
	switch e.Type {
	case TypeRegular:
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n != e.Size || [32]byte(h.Sum(nil)) != w.sum {
			t.Errorf("%s: content differs (%d bytes, want %d)", rel, n, e.Size)
		}
	case TypeSymlink:
		if target, err := os.Readlink(p); err != nil || target != e.LinkTarget {
			t.Errorf("%s: readlink %q %v, want %q", rel, target, err, e.LinkTarget)
		}
	case TypeCharDevice, TypeBlockDevice:
		if unix.Major(st.Rdev) != e.DevMajor || unix.Minor(st.Rdev) != e.DevMinor {
			t.Errorf("%s: device %d:%d, want %d:%d", rel, unix.Major(st.Rdev), unix.Minor(st.Rdev), e.DevMajor, e.DevMinor)
		}
	}
	got := listXattrs(t, p)
	var names []string
	for name, value := range e.Xattrs {
		names = append(names, name)
		if !bytes.Equal(got[name], value) {
			t.Errorf("%s: xattr %s = %x, want %x", rel, name, got[name], value)
		}
	}
	if len(got) != len(names) {
		t.Errorf("%s: xattrs %v, want %v", rel, slices.Sorted(maps.Keys(got)), names)
	}
}

func listXattrs(t *testing.T, p string) map[string][]byte {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string][]byte{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[name] = v[:m]
	}
	return out
}

// A read-only image stays read-only even when mounted read-write: the
// kernel sees the read_only feature and mounts it ro.
func TestImageStaysReadOnly(t *testing.T) {
	testenv.NeedsRoot(t, "loop-device mounts")
	img := writeTree(t, testTrees()["symlinks"], Options{})
	mnt := ext4test.Mount(t, img, true)
	err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a read-write mount of the image: %v, want EROFS", err)
	}
}

// The kernel allocates in a CreateEmpty disk: write, delete, unmount,
// and e2fsck finds it clean.
func TestCreateEmptyMountedReadWrite(t *testing.T) {
	testenv.NeedsRoot(t, "loop-device mounts")
	p := filepath.Join(t.TempDir(), "scratch.ext4")
	if err := CreateEmpty(p, 512<<20); err != nil {
		t.Fatal(err)
	}
	mnt := ext4test.Mount(t, p, true)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	for i := range 20 {
		d := filepath.Join(mnt, fmt.Sprintf("dir-%02d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 200 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", j)), data[:j*97], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Enough data to spread over several groups.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("big-%02d", i)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i += 2 {
		if err := os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("dir-%02d", i))); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(mnt, fmt.Sprintf("big-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(strings.Repeat("long/", 100), filepath.Join(mnt, "slow-link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(mnt, "big-01"), "user.note", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if free := int64(sfs.Bavail) * sfs.Bsize; free < 300<<20 {
		t.Errorf("only %d bytes free after writing ~170 MiB to 512 MiB", free)
	}
	ext4test.Unmount(t, mnt)
	ext4test.Fsck(t, p)
	tree := ext4test.Inspect(t, p)
	if n := tree["/big-01"]; n == nil || n.Size != int64(len(data)) || n.Xattrs["user.note"] != 4 {
		t.Errorf("/big-01 after remount: %+v", n)
	}
	if tree["/big-00"] != nil || tree["/dir-01/f199"] == nil {
		t.Errorf("deletes or files lost")
	}
}

func TestFixedSizeWithContentMountedReadWrite(t *testing.T) {
	testenv.NeedsRoot(t, "loop-device mounts")
	items := testTrees()["xattrs"]
	img := writeTree(t, items, Options{Size: 32 << 20})
	mnt := ext4test.Mount(t, img, true)
	checkMounted(t, mnt, items)
	if err := os.WriteFile(filepath.Join(mnt, "added"), bytes.Repeat([]byte("a"), 10<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "share1")); err != nil {
		t.Fatal(err)
	}
	ext4test.Unmount(t, mnt)
	ext4test.Fsck(t, img)
}
