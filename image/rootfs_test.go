package image_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

func countBuilds(t *testing.T, dir string) int {
	t.Helper()
	builds, err := filepath.Glob(filepath.Join(dir, "build-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(builds)
}

func TestRootfsBuiltOnceAndShared(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	ref := reg.Push(t, "rootfs:1", imagetest.Busybox(t))
	builds := t.TempDir()
	s, root := openStore(t, image.WithRootfsBuilder(countingBuilder(builds)))
	ctx := context.Background()
	img, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}

	const callers = 5
	paths := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.Rootfs(ctx, img)
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	want := filepath.Join(root, "images", "rootfs", strings.TrimPrefix(img.Digest, "sha256:")+".ext4")
	for _, p := range paths {
		if p != want {
			t.Errorf("Rootfs = %q, want %q", p, want)
		}
	}
	if n := countBuilds(t, builds); n != 1 {
		t.Errorf("%d concurrent callers ran %d builds, want 1", callers, n)
	}
	if fi, err := os.Stat(want); err != nil || fi.Size() == 0 {
		t.Fatalf("rootfs file: %v", err)
	}

	// Another store on the root (another process) reuses the file.
	s2, err := image.Open(root, image.WithRootfsBuilder(countingBuilder(builds)))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s2.Rootfs(ctx, img); err != nil || p != want {
		t.Fatalf("Rootfs from a second store: %q %v", p, err)
	}
	if n := countBuilds(t, builds); n != 1 {
		t.Errorf("second store rebuilt the rootfs (%d builds)", n)
	}
}

func TestRootfsSharedAcrossProcesses(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	ref := reg.Push(t, "rootfs-xproc:1", imagetest.Busybox(t))
	root := t.TempDir()
	runHelpers(t, "rootfs", root, ref, 3)
	if n := countBuilds(t, filepath.Join(root, "builds")); n != 1 {
		t.Errorf("3 processes ran %d rootfs builds, want 1", n)
	}
}

func TestRootfsBuildFailureLeavesNothing(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	ref := reg.Push(t, "rootfs-fail:1", imagetest.Busybox(t))
	broken := errors.New("builder broke")
	fail := func(ctx context.Context, layers []v1.Layer, dst string) error {
		if err := os.WriteFile(dst, []byte("half an ext4"), 0o644); err != nil {
			return err
		}
		return broken
	}
	s, root := openStore(t, image.WithRootfsBuilder(fail))
	ctx := context.Background()
	img, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rootfs(ctx, img); !errors.Is(err, broken) {
		t.Fatalf("want the builder's error, got %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "images", "rootfs")); len(left) != 0 {
		t.Errorf("failed build left %v", left)
	}
}
