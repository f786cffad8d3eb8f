package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vk-applevm/vk-applevm/internal/fdhygiene"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
)

func init() {
	register(command{name: "switch", summary: "run the node's pod network switch (started by vk-applevm itself)", hidden: true, run: runSwitch})
}

// runSwitch is the pod network's process: it serves every VM of the state
// root until SIGTERM or SIGINT, outliving the node and the CLI that start
// it.
func runSwitch(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("switch", "--dir DIR")
	dir := fs.String("dir", "", "the switch's directory (config.json, sockets, state)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("switch: --dir is required")
	}
	// It runs for weeks: whatever it inherited by accident (a lock file of
	// a `flock` around the CLI that started it) must not stay held.
	fdhygiene.CloseInherited()
	// Detached from whoever started it: only its own signals stop it.
	sctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, os.Interrupt)
	defer stop()
	signal.Ignore(syscall.SIGHUP)
	return vswitch.Run(sctx, *dir, g.log.With("switchPid", os.Getpid()))
}
