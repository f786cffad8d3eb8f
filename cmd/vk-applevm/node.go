package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/internal/rootlock"
	"github.com/vk-applevm/vk-applevm/node"
	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func init() { register(newNodeCommand) }

func newNodeCommand(g *globals) *cobra.Command {
	var fl NodeConfig
	var configPath string
	cmd := &cobra.Command{
		Use:   "node [--config FILE] [flags]",
		Short: "Join a Kubernetes cluster as a node whose every container is a VM",
		Example: `  vk-applevm node --bootstrap-kubeconfig bootstrap.kubeconfig --kubeconfig /var/lib/vk-applevm/kubelet.kubeconfig
  vk-applevm node --config /etc/vk-applevm/node.yaml --node-ip 192.168.64.1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, err := resolveNodeConfig(cmd, g, configPath, &fl)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			if nc.LogLevel != g.level {
				g.level = nc.LogLevel
				if err := g.init(cmd); err != nil {
					return err
				}
			}
			g.root, g.guestDir = nc.Root, nc.Guest
			cfg, opts, err := nodeSettings(nc)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			return runNode(cmd.Context(), g, cfg, opts)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "node config file (YAML, "+nodeConfigAPIVersion+" "+nodeConfigKind+"); flags given here win")
	addNodeFlags(cmd.Flags(), &fl)
	return cmd
}

// runtimeOptions are the node settings that configure the container
// runtime rather than node.Config.
type runtimeOptions struct {
	defaultMemory uint64
	clusterDNS    []string
	clusterDomain string
	mirrors       map[string]string
	insecure      []string
	// allowHostLoopback is the pod network's host-loopback policy.
	allowHostLoopback bool
	imageGC           image.GCPolicy
}

// imageGCPeriod is the kubelet's ImageGCPeriod.
const imageGCPeriod = 5 * time.Minute

// collectImages runs image garbage collection every imageGCPeriod: images
// of existing VMs (pods' and the CLI's) are in use.
func collectImages(ctx context.Context, g *globals, env *cliEnv, policy image.GCPolicy) {
	t := time.NewTicker(imageGCPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vms, err := env.rt.List(ctx)
		if err != nil {
			g.log.Warn("image garbage collection: list VMs", "err", err)
			continue
		}
		used := map[string]bool{}
		for _, vm := range vms {
			used[vm.ImageDigest()] = true
		}
		if _, err := env.images.GC(ctx, policy, func(d string) bool { return used[d] }); err != nil {
			g.log.Warn("image garbage collection", "err", err)
		}
	}
}

// nodeSettings turns a resolved NodeConfig into node.Config.
func nodeSettings(nc NodeConfig) (node.Config, runtimeOptions, error) {
	cfg := node.DefaultConfig()
	cfg.Kubeconfig = nc.Kubeconfig
	// $KUBECONFIG stands in only for a kubeconfig to use, never for the
	// path bootstrapping writes: that would overwrite the user's own.
	if cfg.Kubeconfig == "" && nc.BootstrapKubeconfig == "" {
		cfg.Kubeconfig = os.Getenv("KUBECONFIG")
	}
	cfg.BootstrapKubeconfig = nc.BootstrapKubeconfig
	cfg.CertDir = nc.CertDir
	if cfg.CertDir == "" {
		cfg.CertDir = filepath.Join(nc.Root, "pki")
	}
	cfg.RotateCertificates = nc.RotateCertificates
	cfg.ServingCSR = nc.ServerTLSBootstrap
	cfg.NodeName = nc.NodeName
	cfg.NodeIP = nc.NodeIP
	cfg.Interface = nc.Interface
	cfg.Labels = nc.NodeLabels
	cfg.Taint = nc.Taint
	cfg.MaxPods = nc.MaxPods
	cfg.ListenAddr = nc.Listen
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile = nc.TLSCertFile, nc.TLSPrivateKeyFile, nc.ClientCAFile
	if cfg.BootstrapKubeconfig != "" && cfg.Kubeconfig == "" {
		return cfg, runtimeOptions{}, fmt.Errorf("--bootstrap-kubeconfig needs --kubeconfig: the path the node's own kubeconfig is written to")
	}
	var err error
	if cfg.Reserved, err = quantities(map[corev1.ResourceName]string{corev1.ResourceCPU: nc.ReservedCPU, corev1.ResourceMemory: nc.ReservedMemory}); err != nil {
		return cfg, runtimeOptions{}, err
	}
	defMem, err := resource.ParseQuantity(nc.DefaultMemory)
	if err != nil {
		return cfg, runtimeOptions{}, fmt.Errorf("--default-memory %q: %w", nc.DefaultMemory, err)
	}
	opts := runtimeOptions{
		defaultMemory: uint64(defMem.Value()), clusterDNS: nc.ClusterDNS, clusterDomain: nc.ClusterDomain,
		mirrors: map[string]string{}, insecure: append([]string{}, nc.InsecureRegistries...),
		allowHostLoopback: nc.AllowHostLoopback,
		imageGC:           image.GCPolicy{HighPercent: nc.ImageGCHighThresholdPercent, LowPercent: nc.ImageGCLowThresholdPercent},
	}
	if g := opts.imageGC; g.LowPercent < 0 || g.HighPercent > 100 || g.LowPercent > g.HighPercent {
		return cfg, opts, fmt.Errorf("image GC thresholds %d%%/%d%%: want 0 <= low <= high <= 100", g.HighPercent, g.LowPercent)
	}
	for from, to := range nc.RegistryMirrors {
		if from == "" || to == "" || strings.Contains(to, "=") {
			return cfg, opts, fmt.Errorf("--registry-mirror %s=%s: want REGISTRY=MIRROR", from, to)
		}
		opts.mirrors[from] = to
		opts.insecure = append(opts.insecure, to)
	}
	return cfg, opts, nil
}

func runNode(ctx context.Context, g *globals, cfg node.Config, o runtimeOptions) error {
	// 0700: pod directories below hold emptyDir contents, logs and secrets.
	if err := os.MkdirAll(g.root, 0o700); err != nil {
		return internal(fmt.Errorf("create state root: %w", err))
	}
	if err := os.Chmod(g.root, 0o700); err != nil {
		return internal(fmt.Errorf("restrict state root: %w", err))
	}
	lock, err := rootlock.Acquire(g.root)
	if errors.Is(err, rootlock.ErrHeld) {
		return internal(fmt.Errorf("%w: stop it, or give this node its own --root", err))
	}
	if err != nil {
		return internal(err)
	}
	defer lock.Release()
	hostLoopback := o.allowHostLoopback
	env, err := g.openRuntime(ctx, o.insecure, &hostLoopback)
	if err != nil {
		return internal(err)
	}
	defer env.close(context.WithoutCancel(ctx))
	// A crashed switch costs pods their network until it is back: look
	// every second, not only at the lease's health check.
	go env.net.Watch(ctx, time.Second)
	go collectImages(ctx, g, env, o.imageGC)
	drv := g.drivers()[defaultDriver]
	cfg.Version = version
	cfg.Logger = g.log
	cfg.Provider = provider.Config{
		Root: g.root,
		Runtime: &vmruntime.Adapter{
			Runtime: env.rt, Mirrors: o.mirrors, HypervisorCheck: drv.Check,
		},
		DefaultMemoryBytes: o.defaultMemory,
		VMOverheadBytes:    env.rt.Overhead(),
		MaxCPUs:            runtime.NumCPU(),
		ClusterDNS:         o.clusterDNS,
		ClusterDomain:      o.clusterDomain,
		Network:            env.net,
	}
	cfg.PodNetwork = env.net
	g.log.Info("starting node", "name", cfg.NodeName, "version", version, "root", g.root, "hypervisor", drv.Name(),
		"vmOverhead", resource.NewQuantity(int64(env.rt.Overhead()), resource.BinarySI).String(),
		"bootstrap", cfg.BootstrapKubeconfig != "")
	if err := node.Run(ctx, cfg); err != nil {
		return internal(err)
	}
	return nil
}

func quantities(in map[corev1.ResourceName]string) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for k, v := range in {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("reserved %s %q: %w", k, v, err)
		}
		out[k] = q
	}
	return out, nil
}
