package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() { register(newShimCommand) }

// newShimCommand is the shim as the node binary ran it before it had a
// binary of its own (cmd/vk-applevm-shim, which vm/shim.Launch starts).
// Kept, hidden, as `make bench`'s reference for the shim's memory; VMs whose
// shim is this command are re-attached like any other (vm/shim's doc).

func newShimCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "shim --dir DIR",
		Short:  "Run the helper process of one VM (the node starts vk-applevm-shim instead)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef(cmd, "--dir is required")
			}
			// The shim ends with its VM, not with the signals of whoever
			// started it: Run handles SIGTERM itself as a graceful stop.
			return shim.Run(context.WithoutCancel(cmd.Context()), dir, g.drivers())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM's state directory")
	return cmd
}
