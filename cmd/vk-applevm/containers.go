package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

func init() {
	register(command{name: "ps", summary: "list containers", run: runPs})
	register(command{name: "logs", summary: "print a container's output", run: runLogs})
	register(command{name: "exec", summary: "run a command in a running container", run: runExec})
	register(command{name: "stop", summary: "stop containers (SIGTERM, then SIGKILL after a grace period)", run: runStop})
	register(command{name: "rm", summary: "remove containers", run: runRm})
	register(command{name: "cleanup", summary: "remove every container and VM and the VM network of this state root", run: runCleanup})
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

func runPs(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("ps", "[-a]")
	all := fs.Bool("a", false, "also list containers whose VM is stopped")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env, err := g.openRuntime(ctx, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sbs, err := env.rt.List(ctx)
	if err != nil {
		return internal(err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tSTATUS\tIP\tCREATED")
	for _, sb := range sbs {
		state, vmUp := mainState(ctx, sb)
		if !vmUp && !*all {
			continue
		}
		name := sb.Name()
		if sb.Labels()[labelCLI] == "" {
			name += " (pod)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", sb.ID(), name, sb.Config().ImageRef, state, sb.IP(),
			time.Since(sb.Created()).Round(time.Second))
		sb.Close()
	}
	return tw.Flush()
}

func runLogs(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("logs", "[-f] [--tail N] [--since DURATION] [-t] CONTAINER")
	follow := fs.Bool("f", false, "follow the output while the container runs")
	tail := fs.Int("tail", -1, "only the last N lines")
	since := fs.Duration("since", 0, "only output newer than this, e.g. 10m")
	stamps := fs.Bool("t", false, "prefix every line with its time")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	env, err := g.openRuntime(ctx, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sb, err := env.findSandbox(ctx, fs.Arg(0))
	if err != nil {
		return internal(err)
	}
	dir := sb.Config().LogDir
	name := mainProcess
	if sb.Labels()[labelCLI] == "" {
		return internal(fmt.Errorf("%s belongs to a pod: use kubectl logs", fs.Arg(0)))
	}
	opts := crilog.Options{Tail: *tail, Timestamps: *stamps, Follow: *follow}
	if *since > 0 {
		opts.Since = time.Now().Add(-*since)
	}
	if *follow {
		opts.Running = func() bool {
			s, _ := mainState(ctx, sb)
			return strings.HasPrefix(s, "Up")
		}
	}
	if err := crilog.Read(ctx, dir, name, os.Stdout, opts); err != nil {
		return internal(err)
	}
	return nil
}

func runExec(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("exec", "[-i] [-t] [-e KEY=VALUE] [-w DIR] [-u USER[:GROUP]] CONTAINER COMMAND [ARG...]")
	var f runFlags
	fs.BoolVar(&f.stdin, "i", false, "pass stdin to the command")
	fs.BoolVar(&f.tty, "t", false, "allocate a terminal")
	fs.Var(&f.env, "e", "set an environment variable (repeatable)")
	fs.StringVar(&f.workdir, "w", "", "working directory")
	fs.StringVar(&f.user, "u", "", "user as USER[:GROUP]")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return errUsage
	}
	env, err := g.openRuntime(ctx, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sb, err := env.findSandbox(ctx, fs.Arg(0))
	if err != nil {
		return internal(err)
	}
	if !sb.Running(ctx) {
		return internal(fmt.Errorf("container %s is not running", fs.Arg(0)))
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
		ID: "exec-" + container.NewID(), Args: fs.Args()[1:], Env: mergeEnv(imgEnv, f.env),
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

func runStop(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("stop", "[-t SECONDS] CONTAINER...")
	grace := fs.Int("t", 10, "seconds to wait after SIGTERM before SIGKILL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return g.eachContainer(ctx, fs, "stop", func(sb *container.VM) error {
		return sb.Stop(ctx, time.Duration(*grace)*time.Second)
	})
}

func runRm(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("rm", "[-f] CONTAINER...")
	force := fs.Bool("f", false, "remove running containers too (they are killed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return g.eachContainer(ctx, fs, "rm", func(sb *container.VM) error {
		if !*force {
			if sb.Labels()[labelCLI] == "" {
				return fmt.Errorf("it belongs to a pod; delete the pod with kubectl (or -f)")
			}
			if s, _ := mainState(ctx, sb); strings.HasPrefix(s, "Up") {
				return fmt.Errorf("it is running; stop it first or use -f")
			}
		}
		if err := sb.Delete(ctx); err != nil {
			return err
		}
		return os.RemoveAll(g.logDir(sb.ID()))
	})
}

// eachContainer applies fn to every container named in the arguments,
// printing each name done and each failure; the last failure is returned.
func (g *globals) eachContainer(ctx context.Context, fs *flag.FlagSet, verb string, fn func(*container.VM) error) error {
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	env, err := g.openRuntime(ctx, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	var failed error
	for _, name := range fs.Args() {
		sb, err := env.findSandbox(ctx, name)
		if err == nil {
			err = fn(sb)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vk-applevm: %s %s: %v\n", verb, name, err)
			failed = err
			continue
		}
		fmt.Println(name)
	}
	return internal(failed)
}

// runCleanup removes every VM (CLI containers and pod VMs alike) and
// tears the VM network down: `make stop`, or a clean slate after a crash.
func runCleanup(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("cleanup", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env, err := g.openRuntime(ctx, nil)
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
