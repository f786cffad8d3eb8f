// Command cluster builds and runs a local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and metrics-server,
// from upstream Go modules) inside a network namespace, for `make run` and the
// e2e tests.
//
//	cluster build  [--out DIR]
//	cluster up     --dir DIR [--netns NAME] [--host-ip IP] [--ip IP] [--node-name NAME] [--metrics-server=false] ...
//	cluster status --dir DIR
//	cluster exec   --dir DIR -- CMD [ARGS...]
//	cluster down   --dir DIR
//
// Progress goes to stderr; `up` and `status` print a JSON summary on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/build"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/controlplane"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
)

const usage = `usage: cluster <command> [flags]

commands:
  build   build etcd, the Kubernetes control-plane binaries and metrics-server (cached)
  up      start a fresh control plane in a network namespace; prints JSON
  status  report whether the cluster in --dir runs; prints JSON
  exec    run a command inside the cluster's network namespace
  down    stop the cluster and delete its network namespace

run 'cluster <command> -h' for its flags
`

// errUsage marks errors that are the caller's fault: exit code 2.
var errUsage = errors.New("usage")

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], log)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmds := map[string]func(context.Context, []string, *slog.Logger) error{
		"build": cmdBuild, "up": cmdUp, "down": cmdDown, "status": cmdStatus, "exec": cmdExec,
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(usage)
		return nil
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return f(ctx, args[1:], log)
}

// parse parses flags and turns flag errors and stray arguments into errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	if fs.Name() != "exec" && fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected arguments %q", errUsage, fs.Name(), fs.Args())
	}
	return nil
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func defaultBin() string {
	root, err := build.DefaultRoot()
	if err != nil {
		return ""
	}
	return filepath.Join(root, "bin")
}

func cmdBuild(ctx context.Context, args []string, log *slog.Logger) error {
	fl := newFlags("build")
	out := fl.String("out", defaultBin(), "directory for the binaries")
	if err := parse(fl, args); err != nil {
		return err
	}
	dir, err := build.Build(ctx, build.Options{Src: componentSource, Out: *out, Log: log})
	if err != nil {
		return err
	}
	fmt.Println(dir)
	return nil
}

func dirFlag(fl *flag.FlagSet) *string {
	return fl.String("dir", "", "cluster directory (required): PKI, kubeconfigs, logs, etcd data, pid files")
}

func absDir(d string) (string, error) {
	if d == "" {
		return "", fmt.Errorf("%w: --dir is required", errUsage)
	}
	return filepath.Abs(d)
}

func cmdUp(ctx context.Context, args []string, log *slog.Logger) error {
	fl := newFlags("up")
	dir := dirFlag(fl)
	ns := fl.String("netns", "vk-applevm", "network namespace to create (replaced if it exists)")
	hostIP := fl.String("host-ip", "10.201.0.1", "host end of the veth pair")
	ip := fl.String("ip", "10.201.0.2", "namespace end of the veth: the apiserver's and the node's address")
	prefix := fl.Int("prefix-len", 24, "prefix length of the veth subnet")
	node := fl.String("node-name", "vk-applevm", "node name the node certificates and kubeconfig are for")
	bin := fl.String("bin", "", "directory with prebuilt binaries (default: run `build` into "+defaultBin()+")")
	timeout := fl.Duration("timeout", 5*time.Minute, "how long to wait for the cluster to become ready")
	signing := fl.Duration("cluster-signing-duration", 0, "lifetime of certificates the CSR signer issues (0: kube-controller-manager's default, a year)")
	metrics := fl.Bool("metrics-server", true, "also run metrics-server behind the aggregation layer (metrics.k8s.io: kubectl top)")
	resolution := fl.Duration("metric-resolution", 15*time.Second, "how often metrics-server scrapes the nodes' /metrics/resource (at least 10s)")
	v := fl.Int("v", 1, "log verbosity of the Kubernetes components")
	if err := parse(fl, args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	ips := map[string]net.IP{}
	for name, s := range map[string]string{"--host-ip": *hostIP, "--ip": *ip} {
		if ips[name] = net.ParseIP(s); ips[name] == nil {
			return fmt.Errorf("%w: %s %q is not an IP address", errUsage, name, s)
		}
	}
	binDir := *bin
	if binDir == "" {
		if binDir, err = build.Build(ctx, build.Options{Src: componentSource, Log: log}); err != nil {
			return err
		}
	}
	if binDir, err = filepath.Abs(binDir); err != nil {
		return err
	}
	cfg := controlplane.Config{
		Dir: d, BinDir: binDir, NodeName: *node, Timeout: *timeout, SigningDuration: *signing, Verbosity: *v,
		MetricsServer: *metrics, MetricResolution: *resolution,
		NetNS: netns.Config{Name: *ns, HostIP: ips["--host-ip"], IP: ips["--ip"], PrefixLen: *prefix},
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	s, err := controlplane.Up(ctx, cfg, log)
	if err != nil {
		return err
	}
	return printJSON(s)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// loadCluster parses a command's --dir flag and reads the cluster there.
func loadCluster(fl *flag.FlagSet, args []string) (*controlplane.Summary, string, error) {
	dir := dirFlag(fl)
	if err := parse(fl, args); err != nil {
		return nil, "", err
	}
	d, err := absDir(*dir)
	if err != nil {
		return nil, "", err
	}
	s, err := controlplane.Load(d)
	if err != nil {
		return nil, "", err
	}
	return s, d, nil
}

func cmdDown(_ context.Context, args []string, log *slog.Logger) error {
	fl := newFlags("down")
	s, _, err := loadCluster(fl, args)
	if err != nil {
		return err
	}
	return controlplane.Down(s, log)
}

func cmdStatus(ctx context.Context, args []string, _ *slog.Logger) error {
	fl := newFlags("status")
	s, _, err := loadCluster(fl, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s = controlplane.Status(ctx, s)
	if err := printJSON(s); err != nil {
		return err
	}
	if !s.Ready {
		return errors.New("cluster is not ready")
	}
	return nil
}

// cmdExec replaces this process with the command, inside the namespace: the
// command keeps our pid, stdio, signals and its exit status reaches the caller
// unchanged, and nothing of this tool stays around.
func cmdExec(_ context.Context, args []string, _ *slog.Logger) error {
	fl := newFlags("exec")
	s, d, err := loadCluster(fl, args)
	if err != nil {
		return err
	}
	if fl.NArg() == 0 {
		return fmt.Errorf("%w: exec: no command given (cluster exec --dir DIR -- CMD [ARGS...])", errUsage)
	}
	if !s.OwnsNetNS() {
		return fmt.Errorf("network namespace %s is gone or belongs to another cluster: is the cluster in %s up?", s.NetNS, d)
	}
	path, err := exec.LookPath(fl.Arg(0))
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	if err := netns.Enter(s.NetNS); err != nil {
		return err
	}
	// Tell the command which cluster it is in; handy for scripts.
	env := append(os.Environ(), "VK_CLUSTER_DIR="+d)
	if err := unix.Exec(path, fl.Args(), env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
