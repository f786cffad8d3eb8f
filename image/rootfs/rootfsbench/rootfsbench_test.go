package rootfsbench

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestExtractIsTheFlattenedTree checks the tree mkfs.ext4 gets: whiteouts
// and opaque directories applied, upper files winning, hard links kept
// (mkfs must not write the large files twice), busybox present.
func TestExtractIsTheFlattenedTree(t *testing.T) {
	testenv.Needs(t, "a round of the ext4 benchmark against mkfs.ext4 (about 30 s; make bench runs it)")
	tree, err := NewTree(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Layers) != 4 || tree.FileBytes < 20<<20 {
		t.Fatalf("%d layers, %d bytes of files; want 4 layers and over 20 MiB", len(tree.Layers), tree.FileBytes)
	}
	layers, err := tree.V1Layers(true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tree")
	if err := Extract(layers, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/share/pkg03")); !os.IsNotExist(err) {
		t.Errorf("the whited-out directory is there (%v)", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "usr/share/pkg04"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "new" {
		t.Errorf("the opaque directory holds %v (%v), want only the upper layer's file", entries, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "usr/share/pkg10/file00.txt")); err != nil || fi.Size() != 500 {
		t.Errorf("the replaced file: %v, %v; want the upper layer's 500 bytes", fi, err)
	}
	lib, err1 := os.Stat(filepath.Join(dir, "opt/app/lib01.so"))
	alias, err2 := os.Stat(filepath.Join(dir, "opt/app/alias25"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if lib.Sys().(*syscall.Stat_t).Ino != alias.Sys().(*syscall.Stat_t).Ino {
		t.Error("alias25 is a copy of lib01.so, not a hard link")
	}
	if fi, err := os.Lstat(filepath.Join(dir, "bin/sh")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("bin/sh: %v, %v; want busybox's applet symlink", fi, err)
	}
}

// TestComparisonRound runs one real round: Build twice and mkfs.ext4.
func TestComparisonRound(t *testing.T) {
	testenv.Needs(t, "a round of the ext4 benchmark against mkfs.ext4 (about 30 s; make bench runs it)")
	tree, err := NewTree(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewComparison(tree, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, tm := range map[string]Timing{"build": r.Build, "build gzip": r.BuildGzip, "mkfs": r.Mkfs} {
		if tm.Wall <= 0 || tm.Wall > time.Minute || tm.CPU < 0 {
			t.Errorf("%s took %v wall, %v CPU", name, tm.Wall, tm.CPU)
		}
	}
	if r.Mkfs.CPU == 0 {
		t.Error("mkfs.ext4 used no CPU time: its rusage was not read")
	}
	left, _ := filepath.Glob(filepath.Join(c.work, "*.ext4"))
	if len(left) != 0 {
		t.Errorf("images left behind: %v", left)
	}
}
