package platform

import (
	"context"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/bridge"
)

// Open sets up (or re-attaches to) the bridge network of opts.StateDir.
func Open(ctx context.Context, opts Options) (network.Network, error) {
	return bridge.New(ctx, bridge.Config{
		StateDir:        opts.StateDir,
		Subnet:          opts.Subnet,
		DNS:             opts.DNS,
		EnableIPForward: opts.EnableIPForward,
		NodeNetns:       opts.NodeNetns,
	})
}
