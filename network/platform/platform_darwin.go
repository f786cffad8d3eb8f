//go:build darwin

package platform

import (
	"context"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/vznat"
)

// Open returns vz's NAT network; nothing is created on the host.
func Open(_ context.Context, opts Options) (network.Network, error) {
	return vznat.New(vznat.Config{DNS: opts.DNS}), nil
}
