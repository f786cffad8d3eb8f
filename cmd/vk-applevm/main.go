// Command vk-applevm is the node agent and the CLI: `vk-applevm node` joins
// a Kubernetes cluster as a node whose every container is a VM; `run`, `ps`,
// `logs`, `exec`, `stop`, `rm` and `images` drive containers directly, like
// Apple's `container`; `shim` is the per-VM helper process the others start.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// exitError carries a process exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// Exit codes of vk-applevm itself, as Docker and Apple's container use
// them: the container's own code otherwise.
const (
	exitInternal      = 125
	exitNotExecutable = 126
	exitNotFound      = 127
)

type command struct {
	name    string
	summary string
	hidden  bool
	run     func(ctx context.Context, g *globals, args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:]))
}

func runMain(ctx context.Context, args []string) int {
	g, rest, err := parseGlobals(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vk-applevm:", err)
		return 2
	}
	if len(rest) == 0 || rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help" {
		usage()
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != rest[0] {
			continue
		}
		err := c.run(ctx, g, rest[1:])
		if err == nil {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "vk-applevm:", ee.err)
			}
			return ee.code
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintln(os.Stderr, "vk-applevm:", err)
		return exitInternal
	}
	fmt.Fprintf(os.Stderr, "vk-applevm: unknown command %q (see vk-applevm help)\n", rest[0])
	return 2
}

// errUsage: the subcommand already printed what was wrong with its flags.
var errUsage = errors.New("usage")

func usage() {
	fmt.Fprintf(os.Stderr, "Usage: vk-applevm [--root DIR] [--log-level LEVEL] COMMAND [ARGS]\n\nCommands:\n")
	sorted := append([]command{}, commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		if !c.hidden {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintf(os.Stderr, "\nRun 'vk-applevm COMMAND -h' for a command's flags.\n")
}
