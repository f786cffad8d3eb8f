// Package node builds and runs the virtual-kubelet node: it registers the
// Mac as a Kubernetes node, keeps its status, conditions and lease current,
// and serves the kubelet API (logs, exec, attach, port-forward, stats) on
// :10250 over HTTPS with the kubelet's webhook authentication and
// authorization. The pods themselves are the provider's business.
//
// cmd/vk-applevm wires it in a few lines:
//
//	cfg := node.DefaultConfig()
//	cfg.NodeName = "mac-mini"
//	cfg.Kubeconfig = kubeconfigPath
//	cfg.Provider = provider.Config{Root: root, Runtime: runtime}
//	return node.Run(ctx, cfg)
//
// Run fills the provider's NodeName, NodeIP, Objects, Client, Recorder,
// Allocatable and Logger and builds it once virtual-kubelet's informers
// exist.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
)

const (
	// DefaultTaint keeps ordinary workloads (and DaemonSets such as
	// kube-proxy that cannot run in a VM) off the node unless they
	// tolerate it.
	DefaultTaint = "virtual-kubelet.io/provider=applevm:NoSchedule"
	// KubernetesVersion is the Kubernetes API the node speaks
	// (k8s.io/api v0.37.2 in go.mod).
	KubernetesVersion = "v1.37.2"
	// InstanceType is the node.kubernetes.io/instance-type label.
	InstanceType = "applevm"
)

// Config configures a node. Start from DefaultConfig.
type Config struct {
	NodeName string
	// Client talks to the API server; nil builds one from Kubeconfig (or
	// $KUBECONFIG, or the in-cluster config) with the kubelet's rate
	// limits.
	Client kubernetes.Interface
	// EventClient records events; nil: Client when that is given, else a
	// client of its own built from Kubeconfig (KubeletRateLimits).
	EventClient kubernetes.Interface
	Kubeconfig  string
	// BootstrapKubeconfig, when set, is TLS bootstrapping as the
	// kubelet's --bootstrap-kubeconfig: unless Kubeconfig already holds a
	// valid client certificate, its bootstrap token requests one for
	// system:node:<NodeName> and Kubeconfig is written to use it.
	BootstrapKubeconfig string
	// CertDir keeps the node's client and serving key pairs
	// (kubelet-client-current.pem, kubelet-server-current.pem); empty:
	// <Provider.Root>/pki.
	CertDir string
	// RotateCertificates renews the client certificate before it expires
	// (a CSR the cluster approves for a node renewing itself), when the
	// kubeconfig authenticates as system:node:<NodeName>.
	RotateCertificates bool
	// Provider configures the provider; Root and Runtime are required.
	// Run fills NodeName, NodeIP, Objects, Client, Recorder, Allocatable
	// and Logger.
	Provider provider.Config
	// PodNetwork receives the cluster's Services (cluster DNS, Service
	// addresses) and the pods' host ports; nil leaves pods without them.
	PodNetwork podnet.Switch
	// Health reports whether new VMs can run (hypervisor usable); nil uses
	// Provider.Runtime.Check.
	Health func(ctx context.Context) error

	// ListenAddr is the kubelet API's address (":10250").
	ListenAddr string
	// TLSCertFile and TLSKeyFile are the serving certificate. Without
	// them the node asks the cluster for a kubelet-serving certificate
	// (ServingCSR) and falls back to a self-signed one.
	TLSCertFile, TLSKeyFile string
	ServingCSR              bool
	// CSRWait bounds the wait for the CSR's approval before the node
	// serves a self-signed certificate; it keeps waiting in the background
	// and switches when the certificate is issued.
	CSRWait time.Duration
	// ClientCAFile authenticates client certificates (the API server's
	// kubelet client); empty reads the cluster's kube-root-ca.crt
	// ConfigMap.
	ClientCAFile string
	// StreamIdleTimeout and StreamCreationTimeout bound exec, attach and
	// port-forward streams (kubelet: 4 h and 30 s).
	StreamIdleTimeout, StreamCreationTimeout time.Duration

	// Taint is "key=value:Effect" or "key:Effect"; "" means no taint.
	Taint string
	// Labels are added to the node's own (and may override them).
	Labels map[string]string
	// Reserved is kept back from capacity for macOS and vk-applevm
	// itself (cpu, memory), like the kubelet's system-reserved.
	Reserved corev1.ResourceList
	MaxPods  int
	// NodeIP is the address the cluster reaches the node at; empty picks
	// the first address of Interface, or of the default route's interface.
	NodeIP    string
	Interface string
	// Hostname is the node's Hostname address (default: the OS host name).
	// The API server dials it first unless its
	// --kubelet-preferred-address-types puts InternalIP first.
	Hostname string

	// MemoryPressureBytes: MemoryPressure when the host's available memory
	// is below it (kubelet: eviction-hard memory.available<100Mi).
	MemoryPressureBytes uint64
	// DiskPressurePercent: DiskPressure when the state root's file system
	// has less than this share free (kubelet: nodefs.available<10%).
	DiskPressurePercent int
	// DiskMinFreeBytes: below it the node is not Ready and stops renewing
	// its lease (new VMs need room for scratch disks and logs).
	DiskMinFreeBytes uint64
	// StatusInterval is how often health and conditions are re-evaluated.
	StatusInterval time.Duration

	// Version is vk-applevm's version (reported in NodeInfo).
	Version string
	Logger  *slog.Logger
}

// DefaultConfig returns the defaults every field of Config documents.
func DefaultConfig() Config {
	return Config{
		ListenAddr:            ":10250",
		ServingCSR:            true,
		RotateCertificates:    true,
		CSRWait:               30 * time.Second,
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
		Taint:                 DefaultTaint,
		Reserved: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("500m"),
			corev1.ResourceMemory: resource.MustParse("2Gi"),
		},
		MaxPods:             110, // the kubelet's default
		MemoryPressureBytes: 100 << 20,
		DiskPressurePercent: 10,
		DiskMinFreeBytes:    1 << 30,
		StatusInterval:      10 * time.Second,
	}
}

// complete fills zero fields that have a safe default and checks the rest.
// Taint, ServingCSR and Reserved keep their zero values (none / off /
// nothing reserved): those are choices, not omissions.
func (c *Config) complete() error {
	d := DefaultConfig()
	if c.ListenAddr == "" {
		c.ListenAddr = d.ListenAddr
	}
	if c.CSRWait <= 0 {
		c.CSRWait = d.CSRWait
	}
	if c.StreamIdleTimeout <= 0 {
		c.StreamIdleTimeout = d.StreamIdleTimeout
	}
	if c.StreamCreationTimeout <= 0 {
		c.StreamCreationTimeout = d.StreamCreationTimeout
	}
	if c.MaxPods <= 0 {
		c.MaxPods = d.MaxPods
	}
	if c.DiskPressurePercent <= 0 {
		c.DiskPressurePercent = d.DiskPressurePercent
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = d.StatusInterval
	}
	if c.CertDir == "" && c.Provider.Root != "" {
		c.CertDir = filepath.Join(c.Provider.Root, "pki")
	}
	if c.Version == "" {
		c.Version = buildVersion()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if c.Provider.Root == "" || c.Provider.Runtime == nil {
		errs = append(errs, errors.New("provider root and runtime are required"))
	}
	if c.BootstrapKubeconfig != "" && c.Kubeconfig == "" {
		errs = append(errs, errors.New("a bootstrap kubeconfig needs the kubeconfig path to write the node's own kubeconfig to"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file go together"))
	}
	if c.NodeIP != "" && net.ParseIP(c.NodeIP) == nil {
		errs = append(errs, fmt.Errorf("node IP %q is not an IP address", c.NodeIP))
	}
	if _, err := c.listenPort(); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseTaint(c.Taint); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) listenPort() (int32, error) {
	_, port, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", c.ListenAddr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("listen address %q: the kubelet API needs a fixed port", c.ListenAddr)
	}
	return int32(n), nil
}

// parseTaint reads "key=value:Effect" or "key:Effect" ("" = none).
func parseTaint(s string) (*corev1.Taint, error) {
	if s == "" {
		return nil, nil
	}
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("taint %q: want key=value:Effect", s)
	}
	key, value, _ := strings.Cut(kv, "=")
	t := &corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}
	switch t.Effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return nil, fmt.Errorf("taint %q: effect must be NoSchedule, PreferNoSchedule or NoExecute", s)
	}
	if key == "" {
		return nil, fmt.Errorf("taint %q: empty key", s)
	}
	return t, nil
}

// buildVersion is the main module's version, "dev" in a source build.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
