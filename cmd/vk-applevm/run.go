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
	"time"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/api/resource"
)

func init() { register(newRunCommand) }

type runFlags struct {
	cpus       int
	memory     string
	env        []string
	envFiles   []string
	volumes    []string
	publish    []string
	workdir    string
	user       string
	entrypoint string
	stdin, tty bool
	rm, detach bool
	name       string
	platform   string
	pull       string
	insecure   []string
	capAdd     []string
	capDrop    []string
	readOnly   bool
	secOpts    []string
	sysctls    []string
}

func newRunCommand(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new container, in its own VM",
		Example: `  vk-applevm run --rm busybox echo hello
  vk-applevm run -it --rm -e K=V -v $PWD:/work -w /work busybox sh
  vk-applevm run -d --name web -p 8080:80 busybox httpd -f -p 80`,
		Args: minArgs(1, "an IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, g, f, args[0], args[1:])
		},
	}
	// Flags end at the image: what follows is the container's command.
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.IntVar(&f.cpus, "cpus", 1, "number of vCPUs")
	fl.StringVarP(&f.memory, "memory", "m", "512Mi", "memory for the container (the VM gets this plus a fixed overhead), e.g. 512Mi, 1G")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: its value here)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file (KEY=VALUE lines, # comments)")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, fmt.Sprintf("HOST:CONTAINER[:ro] shares a host directory; CONTAINER alone is an empty disk of the container's own (sparse, %d GiB, chown works; removed with the container)", container.DefaultVolumeDiskBytes>>30))
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user as USER[:GROUP] (names or numbers, as in the image's /etc/passwd)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.BoolVarP(&f.stdin, "interactive", "i", false, "keep stdin open and pass it to the command")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal")
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container id")
	fl.StringVar(&f.name, "name", "", "name the container")
	fl.StringVar(&f.platform, "platform", "", "image platform, e.g. linux/amd64 (default: the host's)")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: always, missing, never")
	fl.StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host:port reached over plain HTTP (repeatable; loopback needs no flag)")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability (ALL for every one)")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability (ALL for every one)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fl.StringArrayVar(&f.secOpts, "security-opt", nil, "no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json (default: the runtime's profile)")
	fl.StringArrayVar(&f.sysctls, "sysctl", nil, "set a namespaced kernel parameter KEY=VALUE (the kubelet's safe set)")
	return cmd
}

func runRun(cmd *cobra.Command, g *globals, f runFlags, ref string, cmdArgs []string) error {
	ctx := cmd.Context()
	clock := newPhaseClock(g.log)
	mem, err := resource.ParseQuantity(normaliseSize(f.memory))
	if err != nil || mem.Value() < 16<<20 {
		return usagef(cmd, "--memory %q: want a size of at least 16Mi, e.g. 512Mi or 1G", f.memory)
	}
	if f.cpus < 1 {
		return usagef(cmd, "--cpus %d: want at least 1", f.cpus)
	}
	switch f.pull {
	case "always", "missing", "never":
	default:
		return usagef(cmd, "--pull %q: want always, missing or never", f.pull)
	}
	envs, err := envSettings(f.env, f.envFiles, os.LookupEnv)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	mounts, err := parseVolumes(f.volumes)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	sec, err := securitySettings(f.capAdd, f.capDrop, f.readOnly, f.secOpts, f.sysctls, os.ReadFile)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	published, err := parsePublish(f.publish)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	if f.detach && f.rm {
		return usagef(cmd, "-d and --rm together are not supported: a detached container is removed with `vk-applevm rm`")
	}
	f.env = envs

	clock.mark("parse")
	env, err := g.openRuntime(ctx, f.insecure, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	clock.mark("open runtime")
	if f.name != "" {
		if _, err := env.findSandbox(ctx, f.name); err == nil {
			return internal(fmt.Errorf("a container named %q exists; remove it with `vk-applevm rm %s`", f.name, f.name))
		}
	}
	img, err := ensureImage(ctx, env.images, ref, f.pull, f.platform, cmd.ErrOrStderr())
	if err != nil {
		return internal(err)
	}
	clock.mark("resolve image")

	cfg := container.VMConfig{
		Name:        f.name,
		Labels:      map[string]string{labelCLI: "true"},
		ImageRef:    ref,
		Platform:    f.platform,
		CPUs:        f.cpus,
		MemoryBytes: uint64(mem.Value()),
		Hostname:    f.name,
		Mounts:      mounts,
		Security:    sec,
		Publish:     published,
	}
	cfg.ID = container.NewID()
	id := cfg.ID
	if cfg.Name == "" {
		cfg.Name = id
	}
	if cfg.Hostname == "" {
		cfg.Hostname = id
	}
	cfg.LogDir = g.logDir(id)
	sb, err := env.rt.Create(ctx, cfg)
	if err != nil {
		return internal(err)
	}
	clock.mark("create")
	proc := container.ProcessConfig{
		ID: mainProcess, LogName: mainProcess, TTY: f.tty, Stdin: f.stdin,
		Args: commandLine(img.Config.Entrypoint, img.Config.Cmd, f.entrypoint, cmdArgs),
		Env:  mergeEnv(img.Config.Env, f.env), Cwd: f.workdir, User: f.user,
	}
	if proc.Cwd == "" {
		proc.Cwd = img.Config.WorkingDir
	}
	if proc.User == "" {
		proc.User = img.Config.User
	}
	if len(proc.Args) == 0 {
		_ = sb.Delete(context.WithoutCancel(ctx))
		return internal(fmt.Errorf("no command: the image %s has no entrypoint or cmd; give one after the image", ref))
	}
	if f.detach {
		if _, err := sb.Start(ctx, proc); err != nil {
			return startFailed(ctx, sb, err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), id)
		return nil
	}
	code, err := runForeground(ctx, sb, proc, f)
	clock.mark("run")
	cleanup := context.WithoutCancel(ctx)
	if f.rm {
		if derr := sb.Delete(cleanup); derr != nil {
			g.log.Warn("remove container", "id", id, "err", derr)
		}
		_ = os.RemoveAll(g.logDir(id))
		clock.mark("remove")
	} else {
		// Like an exited Docker container: nothing runs, the record and
		// logs stay until `vk-applevm rm`.
		_ = sb.Stop(cleanup, 5*time.Second)
		clock.mark("stop")
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// runForeground runs the main process attached to this terminal and
// returns its exit code.
func runForeground(ctx context.Context, sb *container.VM, proc container.ProcessConfig, f runFlags) (int, error) {
	stdio := container.IO{Stdout: os.Stdout, Stderr: os.Stderr}
	if f.stdin {
		stdio.Stdin = os.Stdin
	}
	if f.tty {
		stdio.Stderr = nil
		if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
			if cols, rows, err := term.GetSize(fd); err == nil {
				proc.Rows, proc.Cols = uint16(rows), uint16(cols)
			}
			if f.stdin {
				old, err := term.MakeRaw(fd)
				if err == nil {
					defer term.Restore(fd, old)
				}
			}
			stdio.Resize = watchResize(ctx, fd)
		}
	}
	// Ctrl-C on a non-terminal run goes to the container, as docker run
	// --sig-proxy does; the container decides how to end.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = sb.Signal(runCtx, proc.ID, s.(syscall.Signal), false)
			case <-runCtx.Done():
				return
			}
		}
	}()
	exit, err := sb.Exec(runCtx, proc, stdio)
	if err != nil {
		return 0, startFailed(ctx, sb, err)
	}
	return exit.Code, nil
}

// startFailed maps a failed start to the shell's exit codes.
func startFailed(ctx context.Context, sb *container.VM, err error) error {
	switch {
	case errors.Is(err, container.ErrCommandNotFound):
		return &exitError{code: exitNotFound, err: err}
	case errors.Is(err, container.ErrCommandNotExecutable):
		return &exitError{code: exitNotExecutable, err: err}
	}
	return internal(err)
}

func watchResize(ctx context.Context, fd int) <-chan container.TermSize {
	ch := make(chan container.TermSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(winch)
		defer close(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				if cols, rows, err := term.GetSize(fd); err == nil {
					// The latest size wins: a size not yet taken is stale,
					// and dropping this one instead would leave the guest
					// with it after two quick resizes.
					select {
					case <-ch:
					default:
					}
					ch <- container.TermSize{Rows: uint16(rows), Cols: uint16(cols)}
				}
			}
		}
	}()
	return ch
}

// ensureImage applies --pull; a pull shows its progress on w (per layer
// on a terminal, plain lines otherwise).
func ensureImage(ctx context.Context, store *image.Store, ref, policy, platform string, w io.Writer) (*image.Image, error) {
	if policy != "always" {
		img, err := store.Get(ctx, ref)
		if err != nil && !errors.Is(err, image.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			// The store keeps one platform per reference: a --platform
			// it is not for means the image is not present.
			other, perr := otherPlatform(img, platform)
			if perr != nil {
				return nil, perr
			}
			if !other {
				return img, nil
			}
		}
		if policy == "never" && platform != "" {
			return nil, fmt.Errorf("image %s is not present for %s and --pull=never", ref, platform)
		}
		if policy == "never" {
			return nil, fmt.Errorf("image %s is not present and --pull=never", ref)
		}
	}
	return pullWithProgress(ctx, store, ref, platform, w)
}

// pullWithProgress pulls ref, drawing per-layer progress on w.
func pullWithProgress(ctx context.Context, store *image.Store, ref, platform string, w io.Writer) (*image.Image, error) {
	p := image.NewProgressPrinter(w, isTerminal(w))
	p.Start(ref)
	img, err := store.Pull(ctx, ref, image.PullOptions{Platform: platform, Progress: p.Update})
	p.Finish(img, err)
	return img, err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// otherPlatform reports whether a stored image is for another platform
// than --platform asks for (empty: any).
func otherPlatform(img *image.Image, platform string) (bool, error) {
	if platform == "" {
		return false, nil
	}
	want, err := image.ParsePlatform(platform)
	if err != nil {
		return false, fmt.Errorf("--platform: %w", err)
	}
	return img.Platform.OS != want.OS || img.Platform.Architecture != want.Architecture, nil
}

// commandLine follows docker run: --entrypoint replaces the image's
// entrypoint (and drops its cmd); arguments after the image replace cmd.
func commandLine(entrypoint, cmd []string, overrideEntry string, args []string) []string {
	if overrideEntry != "" {
		entrypoint, cmd = []string{overrideEntry}, nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

// mergeEnv overlays KEY=VALUE settings on the image's environment.
func mergeEnv(base, extra []string) []string {
	idx := map[string]int{}
	out := append([]string{}, base...)
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// normaliseSize accepts Docker-style sizes (512m, 1g) besides Kubernetes
// quantities (512Mi, 1G).
func normaliseSize(s string) string {
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'b', 'B':
			s = s[:n-1]
		}
	}
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'm', 'g':
			return s[:n-1] + strings.ToUpper(s[n-1:]) + "i"
		}
	}
	return s
}
