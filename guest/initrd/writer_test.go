package initrd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleArchive writes the same small tree each time it is called.
func sampleArchive(t *testing.T, src string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []error{
		w.Dir("etc", 0o700),
		w.File("/etc/hostname", 0o644, 5, strings.NewReader("guest")),
		w.FileFromPath("sbin/init", 0o755, src),
		w.File("lib/vkav/modules/a.ko", 0o644, 3, strings.NewReader("abc")), // parents added
		w.File("empty", 0o600, 0, strings.NewReader("")),
		w.Symlink("bin", "sbin"),
		w.CharDevice("dev/console", 0o600, 5, 1),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

func requireCpio(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("GNU cpio is needed to check the archive: apt-get install cpio (%v)", err)
	}
	return p
}

func TestArchiveReadByGNUCpio(t *testing.T) {
	cpio := requireCpio(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "init-src")
	initData := bytes.Repeat([]byte("0123456789"), 1001) // not a multiple of 4
	if err := os.WriteFile(src, initData, 0o600); err != nil {
		t.Fatal(err)
	}
	archive := sampleArchive(t, src)

	list := exec.Command(cpio, "-t", "-v", "--quiet")
	list.Stdin = bytes.NewReader(archive)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		kinds = append(kinds, fields[0][:1]+" "+fields[len(fields)-1])
	}
	// Symlinks list as "bin -> sbin"; the last field is the target.
	want := []string{
		"d etc", "- etc/hostname", "d sbin", "- sbin/init", "d lib", "d lib/vkav",
		"d lib/vkav/modules", "- lib/vkav/modules/a.ko", "- empty", "l sbin", "d dev", "c dev/console",
	}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Fatalf("cpio -tv listing:\n%s\nwant (type, name):\n%s", out, strings.Join(want, "\n"))
	}

	dst := filepath.Join(dir, "out")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	// Extract everything but the device node, which needs privileges the
	// test should not depend on; its presence and type are checked above.
	extract := exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames", "-f", "dev/console")
	extract.Dir = dst
	extract.Stdin = bytes.NewReader(archive)
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	checkFile(t, filepath.Join(dst, "sbin/init"), initData, 0o755)
	checkFile(t, filepath.Join(dst, "etc/hostname"), []byte("guest"), 0o644)
	checkFile(t, filepath.Join(dst, "lib/vkav/modules/a.ko"), []byte("abc"), 0o644)
	checkFile(t, filepath.Join(dst, "empty"), nil, 0o600)
	if target, err := os.Readlink(filepath.Join(dst, "bin")); err != nil || target != "sbin" {
		t.Fatalf("symlink bin: target %q, err %v", target, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "etc")); err != nil || st.Mode().Perm() != 0o700 || !st.IsDir() {
		t.Fatalf("etc: %v %v", st, err)
	}
}

func checkFile(t *testing.T, p string, want []byte, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, want %d", p, len(got), len(want))
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != perm {
		t.Fatalf("%s: mode %v, want %v", p, st.Mode().Perm(), perm)
	}
}

func TestArchiveIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "init")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := sampleArchive(t, src)
	// A different mtime on the source must not change the archive.
	if err := os.Chtimes(src, time0, time0); err != nil {
		t.Fatal(err)
	}
	b := sampleArchive(t, src)
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same tree differ")
	}
	if len(a)%4 != 0 {
		t.Fatalf("archive length %d is not 4-byte aligned", len(a))
	}
	if !bytes.Contains(a, []byte("TRAILER!!!\x00")) {
		t.Fatal("archive has no trailer")
	}
}

func TestWriterRefusesBadEntries(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.File("a", 0o644, 1, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	cases := map[string]error{
		"duplicate":       w.File("a", 0o644, 1, strings.NewReader("y")),
		"child of a file": w.File("a/b", 0o644, 1, strings.NewReader("y")),
		"dot-dot":         w.Dir("x/../../etc", 0o755),
		"root":            w.Dir("/", 0o755),
		"reserved":        w.Dir("TRAILER!!!", 0o755),
		"empty target":    w.Symlink("l", ""),
	}
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Dir("late", 0o755); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

func TestShortReaderFailsAndSticks(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.File("short", 0o644, 10, strings.NewReader("abc")); err == nil {
		t.Fatal("a reader shorter than size was accepted")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed entry reported success")
	}
}

var time0 = time.Unix(1, 0)
