package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() {
	register(newPsCommand)
	register(newLogsCommand)
	register(newExecCommand)
	register(newStopCommand)
	register(newRmCommand)
	register(newCleanupCommand)
	register(newInspectCommand)
}

// mainState describes a container's main process for ps.
func mainState(ctx context.Context, sb *container.VM) (string, bool) {
	st, err := sb.State(ctx)
	if err != nil {
		if errors.Is(err, shim.ErrShimDead) {
			return "Dead (VM helper gone)", false
		}
		return "Unknown: " + err.Error(), false
	}
	if st.Status != shim.StatusRunning {
		return "Stopped", false
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	exit, err := sb.Wait(wctx, mainProcess)
	switch {
	case err == nil:
		return fmt.Sprintf("Exited (%d)", exit.Code), true
	case errors.Is(err, context.DeadlineExceeded):
		return "Up " + time.Since(st.StartedAt).Round(time.Second).String(), true
	case errors.Is(err, container.ErrNotFound):
		return "Created", true
	}
	return "Unknown: " + err.Error(), true
}

// psEntry is one row of ps (and its JSON form).
type psEntry struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	Status  string    `json:"status"`
	IP      string    `json:"ip,omitempty"`
	Ports   string    `json:"ports,omitempty"`
	Created time.Time `json:"created"`
	// Pod is namespace/pod/container for a pod's VM; empty for CLI ones.
	Pod string `json:"pod,omitempty"`
}

func newPsCommand(g *globals) *cobra.Command {
	var all bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps [-a] [--format table|json]",
		Short: "List containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef(cmd, "--format %q: want table or json", format)
			}
			return runPs(cmd, g, all, format)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list containers whose VM is stopped")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func runPs(cmd *cobra.Command, g *globals, all bool, format string) error {
	ctx := cmd.Context()
	env, err := g.openRuntime(ctx, nil, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sbs, err := env.rt.List(ctx)
	if err != nil {
		return internal(err)
	}
	entries := []psEntry{}
	for _, sb := range sbs {
		state, vmUp := mainState(ctx, sb)
		if vmUp || all {
			e := psEntry{ID: sb.ID(), Name: sb.Name(), Image: sb.Config().ImageRef, Status: state, IP: sb.IP(),
				Ports: publishedString(sb.Config().Publish), Created: sb.Created()}
			if sb.Labels()[labelCLI] == "" {
				e.Pod = sb.Name()
			}
			entries = append(entries, e)
		}
		sb.Close()
	}
	out := cmd.OutOrStdout()
	if format == "json" {
		return writeJSON(out, entries)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tSTATUS\tIP\tPORTS\tCREATED")
	for _, e := range entries {
		name := e.Name
		if e.Pod != "" {
			name += " (pod)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s ago\n", e.ID, name, e.Image, e.Status, e.IP, e.Ports,
			time.Since(e.Created).Round(time.Second))
	}
	return tw.Flush()
}

// writeJSON prints v indented, as docker inspect does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type logsFlags struct {
	follow, stamps bool
	tail           int
	since          time.Duration
}

func newLogsCommand(g *globals) *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [--since DURATION] [-t] CONTAINER",
		Short: "Print a container's output",
		Args:  exactArgs(1, "one CONTAINER"),
		RunE:  func(cmd *cobra.Command, args []string) error { return runLogs(cmd, g, f, args[0]) },
	}
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "follow the output while the container runs")
	cmd.Flags().IntVarP(&f.tail, "tail", "n", -1, "only the last N lines")
	cmd.Flags().DurationVar(&f.since, "since", 0, "only output newer than this, e.g. 10m")
	cmd.Flags().BoolVarP(&f.stamps, "timestamps", "t", false, "prefix every line with its time")
	return cmd
}

func runLogs(cmd *cobra.Command, g *globals, f logsFlags, name string) error {
	ctx := cmd.Context()
	env, err := g.openRuntime(ctx, nil, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sb, err := env.findSandbox(ctx, name)
	if err != nil {
		return internal(err)
	}
	if sb.Labels()[labelCLI] == "" {
		return internal(fmt.Errorf("%s belongs to a pod: use kubectl logs", name))
	}
	opts := crilog.Options{Tail: f.tail, Timestamps: f.stamps, Follow: f.follow}
	if f.since > 0 {
		opts.Since = time.Now().Add(-f.since)
	}
	if f.follow {
		opts.Running = func() bool {
			s, _ := mainState(ctx, sb)
			return strings.HasPrefix(s, "Up")
		}
	}
	if err := crilog.Read(ctx, sb.Config().LogDir, mainProcess, cmd.OutOrStdout(), opts); err != nil {
		return internal(err)
	}
	return nil
}

func newExecCommand(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "exec [-it] [-e KEY=VALUE] [-w DIR] [-u USER[:GROUP]] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  minArgs(2, "a CONTAINER and a COMMAND"),
		RunE:  func(cmd *cobra.Command, args []string) error { return runExec(cmd, g, f, args[0], args[1:]) },
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.BoolVarP(&f.stdin, "interactive", "i", false, "pass stdin to the command")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory")
	fl.StringVarP(&f.user, "user", "u", "", "user as USER[:GROUP]")
	return cmd
}

func runExec(cmd *cobra.Command, g *globals, f runFlags, name string, args []string) error {
	ctx := cmd.Context()
	envs, err := envSettings(f.env, f.envFiles, os.LookupEnv)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	env, err := g.openRuntime(ctx, nil, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sb, err := env.findSandbox(ctx, name)
	if err != nil {
		return internal(err)
	}
	if !sb.Running(ctx) {
		return internal(fmt.Errorf("container %s is not running", name))
	}
	img, err := env.images.Get(ctx, sb.ImageRef())
	var imgEnv []string
	cwd, user := f.workdir, f.user
	if err == nil {
		imgEnv = img.Config.Env
		if cwd == "" {
			cwd = img.Config.WorkingDir
		}
		if user == "" {
			user = img.Config.User
		}
	}
	proc := container.ProcessConfig{
		ID: "exec-" + container.NewID(), Args: args, Env: mergeEnv(imgEnv, envs),
		Cwd: cwd, User: user, TTY: f.tty, Stdin: f.stdin,
	}
	code, err := runForeground(ctx, sb, proc, f)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func newStopCommand(g *globals) *cobra.Command {
	var grace int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] CONTAINER...",
		Short: "Stop containers (SIGTERM, then SIGKILL after a grace period)",
		Args:  minArgs(1, "at least one CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			guard := nodeGuard{root: g.root}
			defer guard.release()
			return g.eachContainer(cmd, args, "stop", func(sb *container.VM) error {
				if sb.Labels()[labelCLI] == "" {
					if err := guard.take("it belongs to a pod"); err != nil {
						return err
					}
				}
				return sb.Stop(cmd.Context(), time.Duration(grace)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&grace, "time", "t", 10, "seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

func newRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] CONTAINER...",
		Short: "Remove containers",
		Args:  minArgs(1, "at least one CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			guard := nodeGuard{root: g.root}
			defer guard.release()
			return g.eachContainer(cmd, args, "rm", func(sb *container.VM) error {
				if sb.Labels()[labelCLI] == "" {
					if !force {
						return fmt.Errorf("it belongs to a pod; delete the pod with kubectl (or -f)")
					}
					if err := guard.take("it belongs to a pod"); err != nil {
						return err
					}
				}
				if !force {
					if s, _ := mainState(ctx, sb); strings.HasPrefix(s, "Up") {
						return fmt.Errorf("it is running; stop it first or use -f")
					}
				}
				if err := sb.Delete(ctx); err != nil {
					return err
				}
				return os.RemoveAll(g.logDir(sb.ID()))
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove running containers too (they are killed)")
	return cmd
}

// eachContainer applies fn to every container named in the arguments,
// printing each name done and each failure; the last failure is returned.
func (g *globals) eachContainer(cmd *cobra.Command, names []string, verb string, fn func(*container.VM) error) error {
	ctx := cmd.Context()
	env, err := g.openRuntime(ctx, nil, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	var failed error
	for _, name := range names {
		sb, err := env.findSandbox(ctx, name)
		if err == nil {
			err = fn(sb)
		}
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "vk-applevm: %s %s: %v\n", verb, name, err)
			failed = err
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), name)
	}
	return internal(failed)
}

func newCleanupCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove every container and VM and the VM network of this state root",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runCleanup(cmd.Context(), g) },
	}
}

// runCleanup removes every sandbox (CLI containers and pod VMs alike) and
// tears the VM network down: `make stop`, or a clean slate after a crash.
func runCleanup(ctx context.Context, g *globals) error {
	guard := nodeGuard{root: g.root}
	defer guard.release()
	if err := guard.take("cleanup removes every VM and the network"); err != nil {
		return internal(err)
	}
	env, err := g.openRuntime(ctx, nil, nil)
	if err != nil {
		return internal(err)
	}
	sbs, err := env.rt.List(ctx)
	if err != nil {
		return internal(err)
	}
	var failed error
	for _, sb := range sbs {
		if err := sb.Delete(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "vk-applevm: remove %s: %v\n", sb.ID(), err)
			failed = err
			continue
		}
		fmt.Printf("removed %s (%s)\n", sb.ID(), sb.Name())
	}
	if err := env.net.Teardown(ctx); err != nil {
		return internal(fmt.Errorf("tear down the VM network: %w", err))
	}
	return internal(failed)
}
