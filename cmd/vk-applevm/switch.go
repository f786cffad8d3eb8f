package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vk-applevm/vk-applevm/internal/fdhygiene"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
)

func init() { register(newSwitchCommand) }

// newSwitchCommand is the pod network's process: it serves every VM of the
// state root until SIGTERM or SIGINT, outliving the node and the CLI that
// start it.
func newSwitchCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "switch --dir DIR",
		Short:  "Run the node's pod network switch (started by vk-applevm itself)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef(cmd, "--dir is required")
			}
			// It runs for weeks: whatever it inherited by accident (a lock
			// file of a `flock` around the CLI that started it) must not
			// stay held.
			fdhygiene.CloseInherited()
			// Detached from whoever started it: only its own signals stop it.
			ctx, stop := signal.NotifyContext(context.WithoutCancel(cmd.Context()), syscall.SIGTERM, os.Interrupt)
			defer stop()
			signal.Ignore(syscall.SIGHUP)
			return vswitch.Run(ctx, dir, g.log.With("switchPid", os.Getpid()))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the switch's directory (config.json, sockets, state)")
	return cmd
}
