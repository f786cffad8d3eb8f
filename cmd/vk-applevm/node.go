package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/vk-applevm/vk-applevm/node"
	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func init() {
	register(command{name: "node", summary: "join a Kubernetes cluster as a node whose every container is a VM", run: runNode})
}

func runNode(ctx context.Context, g *globals, args []string) error {
	cfg := node.DefaultConfig()
	host, _ := os.Hostname()
	fs := newFlags("node", "[flags]")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to join (default $KUBECONFIG, else in-cluster)")
	fs.StringVar(&cfg.NodeName, "node-name", strings.ToLower(host), "the node's name")
	fs.StringVar(&cfg.NodeIP, "node-ip", "", "address the cluster reaches the node at (default: the default route's interface)")
	fs.StringVar(&cfg.Interface, "interface", "", "take the node address from this interface")
	fs.StringVar(&cfg.ListenAddr, "listen", cfg.ListenAddr, "address of the kubelet API (logs, exec, port-forward, stats)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "serving certificate of the kubelet API (default: a kubelet-serving CSR, else self-signed)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-private-key-file", "", "its key")
	fs.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "CA of client certificates (default: the cluster's kube-root-ca.crt)")
	fs.StringVar(&cfg.Taint, "taint", cfg.Taint, `taint "key=value:Effect" keeping other workloads off the node ("" for none)`)
	fs.IntVar(&cfg.MaxPods, "max-pods", cfg.MaxPods, "pod limit")
	reservedCPU := fs.String("reserved-cpu", "500m", "CPU kept back for the host")
	reservedMem := fs.String("reserved-memory", "2Gi", "memory kept back for the host")
	defaultMem := fs.String("default-memory", "512Mi", "VM memory of a container without a memory request or limit")
	var clusterDNS, mirrors, insecure stringList
	fs.Var(&clusterDNS, "cluster-dns", "nameserver for pods with dnsPolicy ClusterFirst (repeatable)")
	clusterDomain := fs.String("cluster-domain", "cluster.local", "the cluster's DNS domain")
	fs.Var(&mirrors, "registry-mirror", "REGISTRY=MIRROR: pull REGISTRY's images from MIRROR (host[:port]; repeatable), e.g. index.docker.io=10.0.0.5:5000")
	fs.Var(&insecure, "insecure-registry", "registry host:port reached over plain HTTP (repeatable; loopback needs no flag)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Reserved, err = quantities(map[corev1.ResourceName]string{corev1.ResourceCPU: *reservedCPU, corev1.ResourceMemory: *reservedMem}); err != nil {
		return err
	}
	defMem, err := resource.ParseQuantity(*defaultMem)
	if err != nil {
		return fmt.Errorf("--default-memory %q: %w", *defaultMem, err)
	}
	mirrorMap := map[string]string{}
	for _, m := range mirrors {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			return fmt.Errorf("--registry-mirror %q: want REGISTRY=MIRROR", m)
		}
		mirrorMap[from] = to
		insecure = append(insecure, to)
	}

	env, err := g.openRuntime(ctx, insecure)
	if err != nil {
		return err
	}
	defer env.close(context.WithoutCancel(ctx))
	drv := g.drivers()[defaultDriver]
	cfg.Version = version
	cfg.Logger = g.log
	cfg.Provider = provider.Config{
		Root: g.root,
		Runtime: &vmruntime.Adapter{
			Runtime: env.rt, Mirrors: mirrorMap, HypervisorCheck: drv.Check,
		},
		DefaultMemoryBytes: uint64(defMem.Value()),
		VMOverheadBytes:    env.rt.Overhead(),
		MaxCPUs:            runtime.NumCPU(),
		ClusterDNS:         clusterDNS,
		ClusterDomain:      *clusterDomain,
	}
	g.log.Info("starting node", "name", cfg.NodeName, "version", version, "root", g.root, "hypervisor", drv.Name(),
		"vmOverhead", resource.NewQuantity(int64(env.rt.Overhead()), resource.BinarySI).String())
	return node.Run(ctx, cfg)
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
