package image_test

import (
	"context"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/rootfs"
)

// countingBuilder builds for real and leaves one file per build in dir, so
// builds can be counted across processes. The pause widens the window in
// which a second builder would start if sharing were broken.
func countingBuilder(dir string) image.RootfsBuilder {
	return func(ctx context.Context, layers []v1.Layer, dst string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, "build-*")
		if err != nil {
			return err
		}
		f.Close()
		time.Sleep(200 * time.Millisecond)
		_, err = rootfs.Build(ctx, layers, dst)
		return err
	}
}
