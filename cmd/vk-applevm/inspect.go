package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/node"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() {
	register(newVersionCommand)
}

// inspectEntry is what inspect prints for one container.
type inspectEntry struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Image       string             `json:"image"`
	ImageDigest string             `json:"imageDigest"`
	Created     time.Time          `json:"created"`
	Status      string             `json:"status"`
	IP          string             `json:"ip,omitempty"`
	Labels      map[string]string  `json:"labels,omitempty"`
	Config      container.VMConfig `json:"config"`
	VM          *shim.State        `json:"vm,omitempty"`
	Dir         string             `json:"dir"`
	ConsoleLog  string             `json:"consoleLog"`
}

func newInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show containers' configuration and state as JSON",
		Args:  minArgs(1, "at least one CONTAINER"),
		RunE: func(cmd *cobra.Command, names []string) error {
			ctx := cmd.Context()
			env, err := g.openRuntime(ctx, nil, nil)
			if err != nil {
				return internal(err)
			}
			defer env.close(ctx)
			out := []inspectEntry{}
			for _, name := range names {
				sb, err := env.findSandbox(ctx, name)
				if err != nil {
					return internal(err)
				}
				status, _ := mainState(ctx, sb)
				e := inspectEntry{
					ID: sb.ID(), Name: sb.Name(), Image: sb.ImageRef(), ImageDigest: sb.ImageDigest(),
					Created: sb.Created(), Status: status, IP: sb.IP(), Labels: sb.Labels(), Config: sb.Config(),
					Dir: sb.Dir(), ConsoleLog: sb.ConsoleLog(),
				}
				if st, err := sb.State(ctx); err == nil {
					e.VM = &st
				}
				sb.Close()
				out = append(out, e)
			}
			return writeJSON(cmd.OutOrStdout(), out)
		},
	}
}

func newVersionCommand(*globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "vk-applevm %s\n  go:         %s\n  platform:   %s/%s\n  kubernetes: %s (the API the node speaks)\n",
				version, runtime.Version(), runtime.GOOS, runtime.GOARCH, node.KubernetesVersion)
			return nil
		},
	}
}
