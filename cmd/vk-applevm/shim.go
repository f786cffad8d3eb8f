package main

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() {
	register(command{name: "shim", summary: "run the helper process of one VM (started by vk-applevm itself)", hidden: true, run: runShim})
}

// runShim is the per-VM helper: it owns the VM for its whole life, so the
// node and the CLI can come and go.
func runShim(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("shim", "--dir DIR")
	dir := fs.String("dir", "", "the VM's state directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("shim: --dir is required")
	}
	// The shim ends with its VM, not with the signals of whoever started
	// it: Run handles SIGTERM itself as a graceful stop.
	return shim.Run(context.WithoutCancel(ctx), *dir, g.drivers())
}
