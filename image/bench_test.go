package image_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// BenchmarkPull compares, in one run, a cold pull (empty store), a warm
// pull (blobs stored: only the tag is resolved) and a local Get, all of the
// busybox image from a loopback registry.
func BenchmarkPull(b *testing.B) {
	reg := imagetest.StartRegistry(b)
	ref := reg.Push(b, "bench:1", imagetest.Busybox(b))
	ctx := context.Background()
	quiet := image.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			s, err := image.Open(b.TempDir(), quiet)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	s, err := image.Open(b.TempDir(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRootfs compares building the busybox rootfs with finding the
// one already built.
func BenchmarkRootfs(b *testing.B) {
	reg := imagetest.StartRegistry(b)
	ref := reg.Push(b, "bench:1", imagetest.Busybox(b))
	ctx := context.Background()
	s, err := image.Open(b.TempDir(), image.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	img, err := s.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			path, err := s.Rootfs(ctx, img)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.Remove(path); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Rootfs(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
	})
}
