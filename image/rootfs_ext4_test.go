package image_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// debugfs runs a debugfs request against an ext4 image, read-only.
func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v: %s", request, img, err, out)
	}
	return string(out)
}

// TestRootfsIsAValidExt4 pulls an image whose second layer deletes and
// adds files and checks the ext4 Rootfs gives with e2fsprogs.
func TestRootfsIsAValidExt4(t *testing.T) {
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install e2fsprogs", tool)
		}
	}
	reg := imagetest.StartRegistry(t)
	img := imagetest.AppendFiles(t, imagetest.Busybox(t),
		imagetest.Whiteout("etc/group"),
		imagetest.Regular("srv/hello.txt", 0o644, "hello from layer 2\n"),
	)
	ref := reg.Push(t, "ext4:1", img)
	s, _ := openStore(t)
	ctx := context.Background()
	pulled, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path, err := s.Rootfs(ctx, pulled)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", path, err, out)
	}
	if got := debugfs(t, path, "cat /srv/hello.txt"); !strings.Contains(got, "hello from layer 2") {
		t.Errorf("/srv/hello.txt: %q", got)
	}
	if got := debugfs(t, path, "cat /etc/passwd"); !strings.Contains(got, "user:x:1000:1000:") {
		t.Errorf("/etc/passwd: %q", got)
	}
	if got := debugfs(t, path, "stat /etc/group"); !strings.Contains(got, "File not found") {
		t.Errorf("/etc/group survived its whiteout: %q", got)
	}
	if got := debugfs(t, path, "stat /bin/sh"); !strings.Contains(got, "Type: symlink") {
		t.Errorf("/bin/sh: %q", got)
	}
}
