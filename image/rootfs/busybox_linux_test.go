package rootfs

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// The kernel mounts the image and busybox runs from it.
func TestBusyboxImageRunsFromMount(t *testing.T) {
	base, _, _ := busyboxLayer(t)
	img, _ := build(t, base, layer(t, dir("etc"), file("etc/motd", "hello from ext4\n")))
	mnt := ext4test.Mount(t, img, false)
	out, err := exec.Command("chroot", mnt, "/bin/sh", "-c", "cat /etc/motd; ls /bin | wc -l").CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s /bin/sh: %v\n%s", mnt, err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) < 4 || strings.Join(lines[:3], " ") != "hello from ext4" {
		t.Fatalf("output %q", out)
	}
}
