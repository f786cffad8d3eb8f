package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() { register(newShimCommand) }

func newShimCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "shim --dir DIR",
		Short:  "Run the helper process of one VM (started by vk-applevm itself)",
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
