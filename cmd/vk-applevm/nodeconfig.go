package main

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/node"
	"sigs.k8s.io/yaml"
)

// The node's config file (--config): every node flag has a key of the
// same meaning, flags given on the command line win, unknown keys are
// refused with the key named.
const (
	nodeConfigAPIVersion = "vk-applevm.io/v1alpha1"
	nodeConfigKind       = "NodeConfig"
)

// NodeConfig is the config file's schema, version v1alpha1. The README's
// "Node configuration file" section documents it with these defaults.
type NodeConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// Root, Guest and LogLevel are the global --root, --guest, --log-level.
	Root     string `json:"root,omitempty"`
	Guest    string `json:"guest,omitempty"`
	LogLevel string `json:"logLevel,omitempty"`

	// Kubeconfig is the node's own kubeconfig. With BootstrapKubeconfig it
	// is written by TLS bootstrapping (as the kubelet's --kubeconfig).
	Kubeconfig          string `json:"kubeconfig,omitempty"`
	BootstrapKubeconfig string `json:"bootstrapKubeconfig,omitempty"`
	// CertDir holds the node's client and serving key pairs (default <root>/pki).
	CertDir string `json:"certDir,omitempty"`
	// RotateCertificates renews the client certificate before it expires.
	RotateCertificates bool `json:"rotateCertificates"`
	// ServerTLSBootstrap asks the cluster for the serving certificate
	// (kubelet-serving CSR) and renews it before it expires.
	ServerTLSBootstrap bool `json:"serverTLSBootstrap"`

	NodeName   string            `json:"nodeName,omitempty"`
	NodeIP     string            `json:"nodeIP,omitempty"`
	Interface  string            `json:"interface,omitempty"`
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	Taint      string            `json:"taint"`
	MaxPods    int               `json:"maxPods,omitempty"`

	Listen            string `json:"listen,omitempty"`
	TLSCertFile       string `json:"tlsCertFile,omitempty"`
	TLSPrivateKeyFile string `json:"tlsPrivateKeyFile,omitempty"`
	ClientCAFile      string `json:"clientCAFile,omitempty"`

	ReservedCPU    string `json:"reservedCPU,omitempty"`
	ReservedMemory string `json:"reservedMemory,omitempty"`
	DefaultMemory  string `json:"defaultMemory,omitempty"`

	ClusterDNS    []string `json:"clusterDNS,omitempty"`
	ClusterDomain string   `json:"clusterDomain,omitempty"`
	// AllowHostLoopback lets pods reach services that listen only on the
	// host's loopback, at the gateway's address.
	AllowHostLoopback bool `json:"allowHostLoopback,omitempty"`

	// Image garbage collection thresholds, as the kubelet's.
	ImageGCHighThresholdPercent int `json:"imageGCHighThresholdPercent,omitempty"`
	ImageGCLowThresholdPercent  int `json:"imageGCLowThresholdPercent,omitempty"`

	RegistryMirrors    map[string]string `json:"registryMirrors,omitempty"`
	InsecureRegistries []string          `json:"insecureRegistries,omitempty"`
}

// defaultNodeConfig holds the defaults the flags show.
func defaultNodeConfig() NodeConfig {
	host, _ := os.Hostname()
	return NodeConfig{
		APIVersion: nodeConfigAPIVersion, Kind: nodeConfigKind,
		Root: defaultRoot(), Guest: guest.DefaultDir(), LogLevel: "info",
		RotateCertificates: true, ServerTLSBootstrap: true,
		NodeName: strings.ToLower(host), Taint: node.DefaultTaint, MaxPods: 110,
		ImageGCHighThresholdPercent: image.DefaultGCPolicy.HighPercent, ImageGCLowThresholdPercent: image.DefaultGCPolicy.LowPercent,
		Listen:      ":10250",
		ReservedCPU: "500m", ReservedMemory: "2Gi", DefaultMemory: "512Mi",
		ClusterDomain: "cluster.local",
	}
}

// loadNodeConfig reads path over the defaults: keys it has replace them.
func loadNodeConfig(path string) (NodeConfig, error) {
	c := defaultNodeConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(b, &head); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if head.APIVersion != nodeConfigAPIVersion || head.Kind != nodeConfigKind {
		return c, fmt.Errorf("config %s: apiVersion %q kind %q: want apiVersion %s, kind %s",
			path, head.APIVersion, head.Kind, nodeConfigAPIVersion, nodeConfigKind)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// nodeFlag binds one flag to a field of NodeConfig.
type nodeFlag struct {
	name, short, usage string
	field              func(c *NodeConfig) any // pointer to the field
}

// nodeFlags are the node command's flags; --config is handled apart. The
// global --root, --guest and --log-level map to Root, Guest and LogLevel.
var nodeFlags = []nodeFlag{
	{name: "kubeconfig", usage: "the node's kubeconfig (default $KUBECONFIG, else in-cluster); with --bootstrap-kubeconfig, the path TLS bootstrapping writes (required then)", field: func(c *NodeConfig) any { return &c.Kubeconfig }},
	{name: "bootstrap-kubeconfig", usage: "kubeconfig with a bootstrap token: request the node's client certificate through a CSR, as the kubelet does", field: func(c *NodeConfig) any { return &c.BootstrapKubeconfig }},
	{name: "cert-dir", usage: "directory of the node's key pairs (default <root>/pki)", field: func(c *NodeConfig) any { return &c.CertDir }},
	{name: "rotate-certificates", usage: "renew the client certificate before it expires (CSR)", field: func(c *NodeConfig) any { return &c.RotateCertificates }},
	{name: "server-tls-bootstrap", usage: "request the serving certificate from the cluster (kubelet-serving CSR) and renew it", field: func(c *NodeConfig) any { return &c.ServerTLSBootstrap }},
	{name: "node-name", usage: "the node's name", field: func(c *NodeConfig) any { return &c.NodeName }},
	{name: "node-ip", usage: "address the cluster reaches the node at (default: the default route's interface)", field: func(c *NodeConfig) any { return &c.NodeIP }},
	{name: "interface", usage: "take the node address from this interface", field: func(c *NodeConfig) any { return &c.Interface }},
	{name: "node-labels", usage: "labels to add to the node, key=value,...", field: func(c *NodeConfig) any { return &c.NodeLabels }},
	{name: "taint", usage: `taint "key=value:Effect" keeping other workloads off the node ("" for none)`, field: func(c *NodeConfig) any { return &c.Taint }},
	{name: "max-pods", usage: "pod limit", field: func(c *NodeConfig) any { return &c.MaxPods }},
	{name: "listen", usage: "address of the kubelet API (logs, exec, port-forward, stats)", field: func(c *NodeConfig) any { return &c.Listen }},
	{name: "tls-cert-file", usage: "serving certificate of the kubelet API (default: a kubelet-serving CSR, else self-signed)", field: func(c *NodeConfig) any { return &c.TLSCertFile }},
	{name: "tls-private-key-file", usage: "its key", field: func(c *NodeConfig) any { return &c.TLSPrivateKeyFile }},
	{name: "client-ca-file", usage: "CA of client certificates (default: the kubeconfig's CA, else the cluster's kube-root-ca.crt)", field: func(c *NodeConfig) any { return &c.ClientCAFile }},
	{name: "reserved-cpu", usage: "CPU kept back for the host", field: func(c *NodeConfig) any { return &c.ReservedCPU }},
	{name: "reserved-memory", usage: "memory kept back for the host", field: func(c *NodeConfig) any { return &c.ReservedMemory }},
	{name: "default-memory", usage: "VM memory of a container without a memory request or limit", field: func(c *NodeConfig) any { return &c.DefaultMemory }},
	{name: "cluster-dns", usage: "nameserver for pods with dnsPolicy ClusterFirst (repeatable)", field: func(c *NodeConfig) any { return &c.ClusterDNS }},
	{name: "cluster-domain", usage: "the cluster's DNS domain", field: func(c *NodeConfig) any { return &c.ClusterDomain }},
	{name: "image-gc-high-threshold", usage: "disk usage percent of the state root's filesystem above which unused images are removed", field: func(c *NodeConfig) any { return &c.ImageGCHighThresholdPercent }},
	{name: "image-gc-low-threshold", usage: "disk usage percent image garbage collection frees down to", field: func(c *NodeConfig) any { return &c.ImageGCLowThresholdPercent }},
	{name: "allow-host-loopback", usage: "let pods reach services listening only on this host's loopback (at the pod network's gateway address)", field: func(c *NodeConfig) any { return &c.AllowHostLoopback }},
	{name: "registry-mirror", usage: "REGISTRY=MIRROR: pull REGISTRY's images from MIRROR (host[:port]; repeatable), e.g. index.docker.io=10.0.0.5:5000", field: func(c *NodeConfig) any { return &c.RegistryMirrors }},
	{name: "insecure-registry", usage: "registry host:port reached over plain HTTP (repeatable; loopback needs no flag)", field: func(c *NodeConfig) any { return &c.InsecureRegistries }},
}

// globalNodeFlags map the persistent flags onto the config.
var globalNodeFlags = map[string]func(c *NodeConfig) any{
	"root":      func(c *NodeConfig) any { return &c.Root },
	"guest":     func(c *NodeConfig) any { return &c.Guest },
	"log-level": func(c *NodeConfig) any { return &c.LogLevel },
}

// addNodeFlags defines the node flags on fs, bound to fl's fields and
// showing def's values as defaults.
func addNodeFlags(fs *pflag.FlagSet, fl *NodeConfig) {
	*fl = defaultNodeConfig()
	for _, f := range nodeFlags {
		switch p := f.field(fl).(type) {
		case *string:
			fs.StringVarP(p, f.name, f.short, *p, f.usage)
		case *bool:
			fs.BoolVarP(p, f.name, f.short, *p, f.usage)
		case *int:
			fs.IntVarP(p, f.name, f.short, *p, f.usage)
		case *[]string:
			fs.StringArrayVarP(p, f.name, f.short, *p, f.usage)
		case *map[string]string:
			fs.StringToStringVarP(p, f.name, f.short, *p, f.usage)
		default:
			panic(fmt.Sprintf("node flag %s: unhandled type %T", f.name, p))
		}
	}
}

// resolveNodeConfig is the file's config (or the defaults) with every flag
// given on the command line applied on top.
func resolveNodeConfig(cmd *cobra.Command, g *globals, configPath string, fl *NodeConfig) (NodeConfig, error) {
	c := defaultNodeConfig()
	if configPath != "" {
		var err error
		if c, err = loadNodeConfig(configPath); err != nil {
			return c, err
		}
	}
	flagged := *fl
	flagged.Root, flagged.Guest, flagged.LogLevel = g.root, g.guestDir, g.level
	fields := map[string]func(*NodeConfig) any{}
	for _, f := range nodeFlags {
		fields[f.name] = f.field
	}
	for name, field := range globalNodeFlags {
		fields[name] = field
	}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if field, ok := fields[f.Name]; ok {
			reflect.ValueOf(field(&c)).Elem().Set(reflect.ValueOf(field(&flagged)).Elem())
		}
	})
	return c, nil
}
