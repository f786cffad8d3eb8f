// Command vk-applevm is the node agent and the CLI: `vk-applevm node` joins
// a Kubernetes cluster as a node whose every container is a VM; `run`, `ps`,
// `logs`, `exec`, `stop`, `rm`, `inspect` and `images` drive containers
// directly, like `docker run` and Apple's `container`. Each VM runs in a
// helper process, vk-applevm-shim (cmd/vk-applevm-shim), which must sit
// next to this binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
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

// usageError is a wrong command line: an unknown flag or command, a bad
// flag value, missing or extra arguments. It exits 125, as `docker run`
// does, with one line naming what was wrong.
type usageError struct {
	cmd string // the command path, e.g. "vk-applevm run"
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// commandBuilders are the subcommands; each file registers its own.
var commandBuilders []func(g *globals) *cobra.Command

func register(build func(g *globals) *cobra.Command) {
	commandBuilders = append(commandBuilders, build)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// runMain runs the command line and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return exitCode(root.ExecuteContext(ctx), stderr)
}

// exitCode prints err (one line) and maps it to an exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %s (see '%s --help')\n", ue.cmd, oneLine(ue.err.Error()), ue.cmd)
		return exitInternal
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "vk-applevm:", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors (unknown command, unknown subcommand) come
	// unwrapped: they are usage errors too.
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") {
		fmt.Fprintf(stderr, "vk-applevm: %s (see 'vk-applevm --help')\n", oneLine(msg))
		return exitInternal
	}
	fmt.Fprintln(stderr, "vk-applevm:", err)
	return exitInternal
}

// oneLine keeps the first line of a message (cobra appends hints).
func oneLine(s string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return first
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "vk-applevm",
		Short: "A Kubernetes node, and a container CLI, where every container runs in its own VM",
		Long: `vk-applevm runs every container in its own lightweight Linux VM.

  vk-applevm node ...                 join a Kubernetes cluster as a node (kubectl drives it)
  vk-applevm run -it --rm IMAGE sh    run a container directly, as docker run does`,
		Version:           version,
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.init(cmd)
		},
	}
	root.SetVersionTemplate("vk-applevm {{.Version}}\n")
	g.addFlags(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	})
	for _, build := range commandBuilders {
		root.AddCommand(build(g))
	}
	return root
}

// exactArgs, minArgs and noArgs are cobra's validators with usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef(cmd, "want %s", what)
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "unexpected argument %q", args[0])
	}
	return nil
}
