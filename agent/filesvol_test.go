package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("top-level entry %s is not a symlink: %v", e.Name(), err)
		}
		out[e.Name()] = target
	}
	return out
}

func TestFilesVolumeLayoutAndAtomicUpdate(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	err := writeFilesVolume(dir, []*api.File{
		{Path: "a", Content: []byte("1")},
		{Path: "d/b", Content: []byte("2"), Mode: 0o400},
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if matched, _ := filepath.Match("..2026_11_29_10_00_00.*", first); !matched {
		t.Fatalf("..data -> %q", first)
	}
	if got := readVolume(t, dir); len(got) != 2 || got["a"] != "..data/a" || got["d"] != "..data/d" {
		t.Fatalf("links %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "d", "b")); string(b) != "2" {
		t.Fatalf("d/b = %q", b)
	}
	if st, _ := os.Stat(filepath.Join(dir, "d", "b")); st.Mode().Perm() != 0o400 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := writeFilesVolume(dir, []*api.File{{Path: "c", Content: []byte("3")}}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if second == first {
		t.Fatal("..data not swapped")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old data dir left behind: %v", err)
	}
	if got := readVolume(t, dir); len(got) != 1 || got["c"] != "..data/c" {
		t.Fatalf("links after update %v", got)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{second, "..data", "c"}) {
		t.Fatalf("entries %v", names)
	}
}

func TestFilesVolumeRejectsEscapingPaths(t *testing.T) {
	for _, p := range []string{"", "/abs", "../x", "a/../../x", "..data", "a//b", "./a", `a\b`} {
		if err := checkFilePath(p); !errors.Is(err, ErrBadFilePath) {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"a", "a/b.conf", "x..y"} {
		if err := checkFilePath(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
}
