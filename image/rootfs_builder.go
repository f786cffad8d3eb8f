package image

import (
	"context"
	"log/slog"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image/rootfs"
)

// buildRootfs is the default RootfsBuilder: image/rootfs writes the layers
// straight into a read-only ext4 file.
func buildRootfs(log *slog.Logger) RootfsBuilder {
	return func(ctx context.Context, layers []v1.Layer, dst string) error {
		info, err := rootfs.Build(ctx, layers, dst)
		if err != nil {
			return err
		}
		log.DebugContext(ctx, "rootfs written", "path", dst, "bytes", info.Size, "files", info.Files, "layers", info.Layers)
		return nil
	}
}
