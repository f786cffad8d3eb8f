package image_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

func TestGetIsLocalOnly(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	bb := imagetest.Busybox(t)
	ref := reg.Push(t, "local:1", bb)
	s, root := openStore(t)
	ctx := context.Background()

	if _, err := s.Get(ctx, ref); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("Get before pull: want ErrNotFound, got %v", err)
	}
	pulled, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg.Close() // from here on, only the disk can answer

	got, err := s.Get(ctx, ref)
	if err != nil || got.Digest != pulled.Digest || got.Config.Cmd[0] != "sh" {
		t.Fatalf("Get after pull: %+v %v", got, err)
	}
	// A second store on the same root (another process) sees it too.
	s2, err := image.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, ref); err != nil {
		t.Fatalf("Get from a second store: %v", err)
	}
	if _, err := s.Get(ctx, reg.Ref("local:2")); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get of another tag: want ErrNotFound, got %v", err)
	}

	// A store missing a layer does not claim to have the image.
	layer := strings.TrimPrefix(pulled.Layers[0].Digest, "sha256:")
	if err := os.Remove(filepath.Join(root, "images", "blobs", "sha256", layer)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ref); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get with a missing layer: want ErrNotFound, got %v", err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List with a broken entry: %d images, %v", len(list), err)
	}
}

func TestRemoveAndPrune(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	base := imagetest.Busybox(t)
	app := imagetest.AppendFiles(t, base, imagetest.Regular("app", 0o755, "#!/bin/sh\necho app\n"))
	tool := imagetest.AppendFiles(t, base, imagetest.Regular("tool", 0o755, "#!/bin/sh\necho tool\n"))
	appRef := reg.Push(t, "app:1", app)
	toolRef := reg.Push(t, "tool:1", tool)
	s, root := openStore(t)
	ctx := context.Background()

	appImg, err := s.Pull(ctx, appRef, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	toolImg, err := s.Pull(ctx, toolRef, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appRootfs, err := s.Rootfs(ctx, appImg)
	if err != nil {
		t.Fatal(err)
	}
	toolRootfs, err := s.Rootfs(ctx, toolImg)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing to prune while both refs exist.
	report, err := s.Prune(ctx, nil)
	if err != nil || len(report.Blobs)+len(report.Rootfs) != 0 {
		t.Fatalf("prune with everything referenced: %+v %v", report, err)
	}

	if err := s.Remove(ctx, appRef); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, appRef); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("second Remove: want ErrNotFound, got %v", err)
	}
	if _, err := s.Get(ctx, appRef); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get after Remove: want ErrNotFound, got %v", err)
	}

	// A running container keeps the app image.
	report, err = s.Prune(ctx, func(d string) bool { return d == appImg.Digest })
	if err != nil || len(report.Blobs)+len(report.Rootfs) != 0 {
		t.Fatalf("prune with app in use: %+v %v", report, err)
	}

	// Once it stops, what only app used goes; the shared base layer and
	// everything of tool stay.
	report, err = s.Prune(ctx, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	appOnly := []string{appImg.Digest, appImg.ConfigDigest, appImg.Layers[1].Digest}
	slices.Sort(appOnly)
	slices.Sort(report.Blobs)
	if !slices.Equal(report.Blobs, appOnly) {
		t.Errorf("pruned blobs %v, want %v", report.Blobs, appOnly)
	}
	if len(report.Rootfs) != 1 || report.Rootfs[0] != filepath.Base(appRootfs) || report.BytesFreed <= 0 {
		t.Errorf("pruned rootfs %v (%d bytes), want %s", report.Rootfs, report.BytesFreed, filepath.Base(appRootfs))
	}
	if _, err := os.Stat(appRootfs); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("app rootfs still there: %v", err)
	}
	if _, err := os.Stat(toolRootfs); err != nil {
		t.Errorf("tool rootfs pruned: %v", err)
	}
	if got, err := s.Get(ctx, toolRef); err != nil || got.Digest != toolImg.Digest {
		t.Fatalf("tool after prune: %v %v", got, err)
	}
	if _, err := s.Rootfs(ctx, toolImg); err != nil {
		t.Errorf("tool rootfs after prune: %v", err)
	}

	// Removing the last ref empties the store.
	if err := s.Remove(ctx, toolRef); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"blobs/sha256", "rootfs", "ingest"} {
		if left, _ := os.ReadDir(filepath.Join(root, "images", dir)); len(left) != 0 {
			t.Errorf("images/%s not empty after pruning everything: %v", dir, left)
		}
	}
}

func TestRemoveByDigest(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	bb := imagetest.Busybox(t)
	ref := reg.Push(t, "bydigest:1", bb)
	s, _ := openStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, reg.Addr+"/other@"+img.Digest); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("remove by digest in another repository: want ErrNotFound, got %v", err)
	}
	if err := s.Remove(ctx, img.DigestRef()); err != nil {
		t.Fatalf("remove by digest: %v", err)
	}
	if _, err := s.Get(ctx, ref); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("tag still there after removing its digest: %v", err)
	}
}
