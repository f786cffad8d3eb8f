package ext4test

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"os"
	"os/exec"
	"testing"
)

// Mount loop-mounts img (read-only unless rw) on a temporary directory
// until the test ends. It needs root and loop devices.
func Mount(t testing.TB, img string, rw bool) string {
	testenv.NeedsRoot(t, "loop-device mounts")
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("loop-mounting %s needs root: run the tests as root (sudo -E go test ...)", img)
	}
	dir := t.TempDir()
	opts := "loop,ro"
	if rw {
		opts = "loop"
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o %s %s: %v\n%s (loop devices need the loop module: modprobe loop)", opts, img, err, out)
	}
	t.Cleanup(func() { Unmount(t, dir) })
	return dir
}

// Unmount unmounts dir if it is still mounted.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	if err := exec.Command("mountpoint", "-q", dir).Run(); err != nil {
		return
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v\n%s", dir, err, out)
	}
}
