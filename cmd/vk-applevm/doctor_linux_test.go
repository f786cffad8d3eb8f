package main

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/internal/testenv"
)

// A state root on a nearly full disk fails the disk check.
func TestDoctorFullDisk(t *testing.T) {
	testenv.NeedsRoot(t, "mounts a small tmpfs as the state root's disk")
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(disk, unix.MNT_DETACH)
	code, out, _ := run(t, "--root", filepath.Join(disk, "root"), "--guest", t.TempDir(), "doctor")
	if code != 1 || !strings.Contains(doctorLine(out, "disk space"), " FAIL ") || !strings.Contains(out, "images prune") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
