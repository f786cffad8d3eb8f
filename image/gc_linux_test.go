package image_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
)

// smallDisk loop-mounts a fresh ext4 filesystem of mib MiB and returns its
// mount point.
func smallDisk(t *testing.T, mib int) string {
	testenv.NeedsRoot(t, "loop-mounts a small ext4 filesystem as the node's disk")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"truncate", "-s", itoa(mib) + "M", img},
		{"mkfs.ext4", "-q", "-F", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s (needs e2fsprogs and loop devices)", argv, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

func itoa(n int) string { return strconv.Itoa(n) }

// withRandomFile is busybox plus one file of mib MiB of random bytes: a
// layer that does not compress, so the image costs its size on disk.
func withRandomFile(t *testing.T, name string, mib int) imagetest.File {
	b := make([]byte, mib<<20)
	rand.Read(b)
	return imagetest.Regular(name, 0o644, string(b))
}

// On a small disk, garbage collection removes the least recently used
// images until usage is under the low threshold, and never the image a
// container uses.
func TestGCFreesSpaceOnASmallDisk(t *testing.T) {
	disk := smallDisk(t, 128)
	reg := imagetest.StartRegistry(t)
	base := imagetest.Busybox(t)
	s, err := image.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var imgs []*image.Image
	for _, name := range []string{"oldest", "used", "middle", "newest"} {
		ref := reg.Push(t, name+":1", imagetest.AppendFiles(t, base, withRandomFile(t, name, 12)))
		img, err := s.Pull(ctx, ref, image.PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rootfs(ctx, img); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
		time.Sleep(20 * time.Millisecond) // distinct use times
	}
	// "used" runs a container; it was used before "middle".
	inUse := func(d string) bool { return d == imgs[1].Digest }

	// Below the high threshold nothing happens.
	report, err := s.GC(ctx, image.GCPolicy{HighPercent: 99, LowPercent: 90}, inUse)
	if err != nil || len(report.Removed) != 0 {
		t.Fatalf("GC below the threshold: %+v %v", report, err)
	}
	t.Logf("disk %d %% used with four images", report.Before)
	// Thresholds that take two unused images to reach: the oldest and
	// then "middle" go, "used" is skipped although older.
	low := report.Before - 25
	report, err = s.GC(ctx, image.GCPolicy{HighPercent: report.Before - 5, LowPercent: low}, inUse)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", report)
	if want := []string{imgs[0].Ref, imgs[2].Ref}; !slices.Equal(report.Removed, want) {
		t.Fatalf("removed %v, want %v", report.Removed, want)
	}
	if report.After >= low || report.BytesFreed < 2*12<<20 {
		t.Fatalf("after GC: %d %% used (want < %d), %d bytes freed", report.After, low, report.BytesFreed)
	}
	for _, img := range []*image.Image{imgs[1], imgs[3]} {
		if _, err := s.Get(ctx, img.Ref); err != nil {
			t.Fatalf("%s: %v", img.Ref, err)
		}
	}
	// Asked for more than can be freed, it stops at images in use.
	report, err = s.GC(ctx, image.GCPolicy{HighPercent: 0, LowPercent: 0}, inUse)
	if err != nil || !slices.Equal(report.Removed, []string{imgs[3].Ref}) {
		t.Fatalf("GC to zero: %+v %v", report, err)
	}
	if _, err := s.Get(ctx, imgs[1].Ref); err != nil {
		t.Fatalf("the image in use was removed: %v", err)
	}
}
