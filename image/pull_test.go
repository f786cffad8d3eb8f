package image_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

func TestPullByTagAndDigest(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	bb := imagetest.WithConfig(t, imagetest.Busybox(t), func(c *v1.Config) {
		c.Entrypoint = []string{"/bin/sh", "-c"}
		c.WorkingDir = "/tmp"
		c.User = "1000"
		c.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
		c.Labels = map[string]string{"role": "test"}
	})
	ref := reg.Push(t, "library/busybox:1.0", bb)
	s, root := openStore(t)
	ctx := context.Background()

	var progress []image.Progress
	var mu sync.Mutex
	img, err := s.Pull(ctx, ref, image.PullOptions{Progress: func(p image.Progress) {
		mu.Lock()
		progress = append(progress, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, bb)
	if img.Ref != ref || img.Digest != want || img.RepoDigest != want {
		t.Errorf("got ref %s digest %s repo digest %s; want %s, %s", img.Ref, img.Digest, img.RepoDigest, ref, want)
	}
	cfgDigest, _ := bb.ConfigName()
	if img.ConfigDigest != cfgDigest.String() || img.Platform != image.DefaultPlatform() {
		t.Errorf("config digest %s platform %s", img.ConfigDigest, img.Platform)
	}
	c := img.Config
	if strings.Join(c.Entrypoint, " ") != "/bin/sh -c" || strings.Join(c.Cmd, " ") != "sh" || c.WorkingDir != "/tmp" ||
		c.User != "1000" || !slices.Equal(c.ExposedPorts, []string{"53/udp", "8080/tcp"}) || c.Labels["role"] != "test" ||
		!slices.Equal(c.Env, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}) {
		t.Errorf("config: %+v", c)
	}
	if img.DigestRef() != reg.Addr+"/library/busybox@"+want {
		t.Errorf("DigestRef %s", img.DigestRef())
	}
	var total int64
	for _, d := range blobDigests(t, bb) {
		hex := strings.TrimPrefix(d, "sha256:")
		fi, err := os.Stat(filepath.Join(root, "images", "blobs", "sha256", hex))
		if err != nil {
			t.Fatalf("blob %s not stored: %v", d, err)
		}
		total += fi.Size()
	}
	if img.Size <= total {
		t.Errorf("Size %d does not cover blobs (%d) and manifest", img.Size, total)
	}
	done := 0
	for _, p := range progress {
		if p.Done && !p.Cached {
			done++
		}
	}
	if done != len(blobDigests(t, bb)) {
		t.Errorf("progress reported %d downloaded blobs, want %d: %+v", done, len(blobDigests(t, bb)), progress)
	}

	// Pulling again downloads no blob.
	reg.ResetHits()
	if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range blobDigests(t, bb) {
		if n := reg.BlobGets(d); n != 0 {
			t.Errorf("second pull fetched blob %s %d times", d, n)
		}
	}

	// By digest, with a new ref in the store.
	byDigest := reg.Addr + "/library/busybox@" + want
	img2, err := s.Pull(ctx, byDigest, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img2.Ref != byDigest || img2.Digest != want {
		t.Errorf("by digest: ref %s digest %s", img2.Ref, img2.Digest)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %d images, %v", len(list), err)
	}

	// The store is an OCI layout other tools read.
	if b, err := os.ReadFile(filepath.Join(root, "images", "oci-layout")); err != nil || !strings.Contains(string(b), "1.0.0") {
		t.Errorf("oci-layout: %q %v", b, err)
	}
}

func TestPullNormalisesDockerHubNames(t *testing.T) {
	r, err := image.ParseReference("busybox")
	if err != nil || r.Name() != "index.docker.io/library/busybox:latest" {
		t.Fatalf("busybox → %v, %v", r, err)
	}
	s, _ := openStore(t)
	_, err = s.Pull(context.Background(), "Not/A:Valid::Ref", image.PullOptions{})
	if !errors.Is(err, image.ErrInvalidReference) {
		t.Fatalf("invalid ref: want ErrInvalidReference, got %v", err)
	}
}

func TestPullMultiPlatformIndex(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	bb := imagetest.Busybox(t)
	other := "linux/riscv64"
	if runtime.GOARCH == "riscv64" {
		other = "linux/s390x"
	}
	foreign := imagetest.WithPlatform(t, imagetest.AppendFiles(t, bb, imagetest.Regular("arch", 0o644, other)), other)
	withOurs := reg.PushIndexT(t, "multi:both", imagetest.Index(t, foreign, bb))
	withoutOurs := reg.PushIndexT(t, "multi:foreign", imagetest.Index(t, foreign))
	s, _ := openStore(t)
	ctx := context.Background()

	img, err := s.Pull(ctx, withOurs, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idxDigest := digestOf(t, imagetest.Index(t, foreign, bb))
	if img.Digest != digestOf(t, bb) || img.RepoDigest != idxDigest || img.Platform != image.DefaultPlatform() {
		t.Errorf("picked %s (repo digest %s, %s), want %s from index %s", img.Digest, img.RepoDigest, img.Platform, digestOf(t, bb), idxDigest)
	}
	// Only our platform's blobs were fetched.
	for _, d := range blobDigests(t, foreign) {
		if slices.Contains(blobDigests(t, bb), d) {
			continue
		}
		if n := reg.BlobGets(d); n != 0 {
			t.Errorf("foreign blob %s fetched %d times", d, n)
		}
	}
	// Get resolves the index digest and the manifest digest locally.
	for _, d := range []string{idxDigest, img.Digest} {
		if got, err := s.Get(ctx, reg.Addr+"/multi@"+d); err != nil || got.Digest != img.Digest {
			t.Errorf("Get by %s: %v %v", d, got, err)
		}
	}

	_, err = s.Pull(ctx, withoutOurs, image.PullOptions{})
	if !errors.Is(err, image.ErrNoPlatform) || !strings.Contains(err.Error(), other) {
		t.Fatalf("index without %s: want ErrNoPlatform listing %s, got %v", image.DefaultPlatform(), other, err)
	}

	// An explicit platform overrides the default (linux/amd64 via Rosetta).
	img, err = s.Pull(ctx, withoutOurs, image.PullOptions{Platform: other})
	if err != nil || img.Platform.String() != other || img.Digest != digestOf(t, foreign) {
		t.Fatalf("pull %s: %+v %v", other, img, err)
	}

	// A single-platform image of another platform is refused too.
	single := reg.Push(t, "single:foreign", foreign)
	if _, err := s.Pull(ctx, single, image.PullOptions{}); !errors.Is(err, image.ErrNoPlatform) {
		t.Fatalf("single foreign image: want ErrNoPlatform, got %v", err)
	}
}

func TestPullNotFound(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	reg.Push(t, "present:1", imagetest.Busybox(t))
	s, root := openStore(t)
	for _, ref := range []string{reg.Ref("absent:1"), reg.Ref("present:2"), reg.Ref("present@sha256:" + strings.Repeat("ab", 32))} {
		_, err := s.Pull(context.Background(), ref, image.PullOptions{})
		if !errors.Is(err, image.ErrNotFound) {
			t.Errorf("%s: want ErrNotFound, got %v", ref, err)
		} else if !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") && !strings.Contains(err.Error(), "NAME_UNKNOWN") {
			t.Errorf("%s: registry's error text lost: %v", ref, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "images", "index.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed pulls wrote an index: %v", err)
	}
}

// TestPullLoopbackSpellings: plain HTTP needs no flag for loopback,
// whichever way the registry is named.
func TestPullLoopbackSpellings(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	reg.Push(t, "spell:1", imagetest.Busybox(t))
	_, port, _ := strings.Cut(reg.Addr, ":")
	s, _ := openStore(t)
	for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port} {
		img, err := s.Pull(context.Background(), host+"/spell:1", image.PullOptions{})
		if err != nil {
			t.Errorf("pull via %s: %v", host, err)
			continue
		}
		if img.Ref != host+"/spell:1" {
			t.Errorf("ref %s", img.Ref)
		}
	}
}
