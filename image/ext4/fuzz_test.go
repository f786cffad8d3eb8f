package ext4

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// FuzzAddPaths feeds arbitrary paths and link targets to a writer holding
// a small tree. Whatever is accepted must be in the finished image under
// its clean name; whatever is refused must leave the tree as it was; the
// image must always pass e2fsck.
func FuzzAddPaths(f *testing.F) {
	for _, seed := range []struct {
		path, target string
		kind         uint8
		remove       string
	}{
		{"a/new", "", 0, ""},
		{"../x", "", 0, ""},
		{"/abs/olute", "", 1, ""},
		{"./a/./b", "", 0, ""},
		{"a//b/c", "", 0, "a/b"},
		{"a/f/x", "", 0, ""},
		{"s/x", "", 0, ""},
		{"a/b/link", "a/f", 3, "a/f"},
		{"a/b/link", "../a/f", 3, ""},
		{"a/b/link", "a", 3, ""},
		{"a/sym", strings.Repeat("t", 60), 2, ""},
		{"a/sym", "", 2, ""},
		{"lost+found", "", 0, ""},
		{"lost+found/x", "", 0, "lost+found"},
		{"", "", 1, ""},
		{"a/" + strings.Repeat("n", 255), "", 0, ""},
		{"a/" + strings.Repeat("n", 256), "", 0, ""},
		{"日本/語", "", 1, ""},
		{"nul\x00byte", "", 0, ""},
		{"a/f", "", 1, "a"},
		{"a", "", 0, ""},
		{"dev", "", 4, ""},
	} {
		f.Add(seed.path, seed.target, seed.kind, seed.remove)
	}
	f.Fuzz(func(t *testing.T, path, target string, kind uint8, remove string) {
		img := filepath.Join(t.TempDir(), "fuzz.ext4")
		file, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		w, err := NewWriter(file, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range []item{dirItem("a", 0o755), dirItem("a/b", 0o700), fileItem("a/f", 0o644, "data"), symlinkItem("s", "a")} {
			if err := w.Add(it.e, it.reader()); err != nil {
				t.Fatal(err)
			}
		}
		types := []FileType{TypeRegular, TypeDir, TypeSymlink, TypeHardLink, TypeCharDevice, TypeFifo}
		e := Entry{Path: path, Type: types[int(kind)%len(types)], Mode: 0o640, LinkTarget: target, Size: 4, DevMajor: 1, DevMinor: 5}
		before := [...]string{"a", "a/b", "a/f", "s"}
		addErr := w.Add(e, strings.NewReader("1234"))
		if addErr == nil {
			if _, err := splitPath(path); err != nil {
				t.Fatalf("Add %q accepted a path splitPath refuses: %v", path, err)
			}
			want := e.Type
			if want == TypeHardLink {
				want, _ = w.Lookup(target)
			}
			if got, ok := w.Lookup(path); !ok || got != want {
				t.Fatalf("Add %q (%v) succeeded but Lookup gives %v %v", path, e.Type, got, ok)
			}
		} else {
			for _, p := range before {
				if _, ok := w.Lookup(p); !ok {
					t.Fatalf("failed Add %q (%v) removed %s", path, addErr, p)
				}
			}
		}
		if remove != "" {
			if err := w.Remove(remove); err == nil {
				if _, ok := w.Lookup(remove); ok {
					t.Fatalf("Remove %q succeeded but the entry is still there", remove)
				}
			} else if !errors.Is(err, ErrNotExist) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotDir) {
				t.Fatalf("Remove %q: unexpected error %v", remove, err)
			}
		}
		// Names the writer still knows must come out of the image.
		var expect []string
		for _, p := range append([]string{path}, before[:]...) {
			if names, err := splitPath(p); err == nil && len(names) > 0 {
				if _, ok := w.Lookup(p); ok {
					expect = append(expect, joinNames(names))
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close after Add %q: %v", path, err)
		}
		file.Close()
		ext4test.Fsck(t, img)
		if strings.Contains(path, "\n") {
			return // debugfs's `ls -p` output cannot carry a newline in a name; e2fsck checked it
		}
		tree := ext4test.Inspect(t, img)
		for _, p := range expect {
			if tree[p] == nil {
				t.Fatalf("%s accepted but missing from the image", p)
			}
		}
	})
}
