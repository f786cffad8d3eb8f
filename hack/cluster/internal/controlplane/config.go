// Package controlplane brings a local Kubernetes control plane up inside a
// network namespace and takes it down again. See the package netns for why
// a namespace, and pki for the certificates.
package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
)

// Fixed inside the namespace; nothing listens on the host.
const (
	APIServerPort = 6443
	ServiceCIDR   = "10.0.0.0/24"
	etcdClientURL = "http://127.0.0.1:2379"
	etcdPeerURL   = "http://127.0.0.1:2380"
)

// serviceIP is the first address of ServiceCIDR: the "kubernetes" Service.
var serviceIP = net.IPv4(10, 0, 0, 1)

// Config is what `cluster up` is asked for.
type Config struct {
	Dir      string // everything goes here; absolute
	BinDir   string // etcd, kube-apiserver, ... (see package build)
	NetNS    netns.Config
	NodeName string
	Timeout  time.Duration // for the whole readiness wait
	// SigningDuration is the lifetime of the certificates the CSR signer
	// issues (kube-controller-manager --cluster-signing-duration); 0 keeps
	// its default (a year). Tests make it short to see renewals.
	SigningDuration time.Duration
	Verbosity       int // the components' -v
	// MetricsServer also runs metrics-server behind the aggregation layer
	// (metrics.k8s.io, kubectl top), scraping nodes every MetricResolution.
	MetricsServer    bool
	MetricResolution time.Duration
}

// Validate checks the configuration before anything is touched.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Dir) || !filepath.IsAbs(c.BinDir) {
		return fmt.Errorf("internal: dirs must be absolute (%q, %q)", c.Dir, c.BinDir)
	}
	if err := c.NetNS.Validate(); err != nil {
		return err
	}
	if c.NodeName == "" || len(c.NodeName) > 63 {
		return fmt.Errorf("invalid --node-name %q", c.NodeName)
	}
	for _, r := range c.NodeName {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("--node-name %q: only lower-case letters, digits, '-' and '.' are allowed (it is a DNS name)", c.NodeName)
		}
	}
	if c.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if c.MetricsServer && c.MetricResolution < MinMetricResolution {
		return fmt.Errorf("--metric-resolution %v: metrics-server accepts no less than %v", c.MetricResolution, MinMetricResolution)
	}
	return nil
}

// Summary is printed by `up` and `status` on stdout and kept in
// <dir>/cluster.json; `down`, `exec` and `status` find the cluster through it.
type Summary struct {
	Dir               string               `json:"dir"`
	BinDir            string               `json:"binDir"`
	KubernetesVersion string               `json:"kubernetesVersion"`
	NetNS             string               `json:"netns"`
	NetNSInode        uint64               `json:"netnsInode"` // see ownsNetNS
	HostVeth          string               `json:"hostVeth"`
	HostIP            string               `json:"hostIP"`
	IP                string               `json:"ip"`
	PrefixLen         int                  `json:"prefixLen"`
	APIServer         string               `json:"apiServer"`
	AdminKubeconfig   string               `json:"adminKubeconfig"`
	ServiceCIDR       string               `json:"serviceCIDR"`
	PKIDir            string               `json:"pkiDir"`
	LogDir            string               `json:"logDir"`
	Node              Node                 `json:"node"`
	Components        map[string]Component `json:"components"`
	MetricsServer     *MetricsServer       `json:"metricsServer,omitempty"` // nil: not started (--metrics-server=false)
	Ready             bool                 `json:"ready"`
}

// Node is what the virtual-kubelet node needs to join: its identity, the
// address to register as InternalIP, and its :10250 serving pair.
type Node struct {
	Name        string `json:"name"`
	IP          string `json:"ip"`
	Kubeconfig  string `json:"kubeconfig"`
	ClientCert  string `json:"clientCert"`
	ClientKey   string `json:"clientKey"`
	ServingCert string `json:"servingCert"`
	ServingKey  string `json:"servingKey"`
	ClientCA    string `json:"clientCA"` // verifies the apiserver's client cert on :10250
	// BootstrapKubeconfig holds a bootstrap token: the node's TLS
	// bootstrapping (kubelet --bootstrap-kubeconfig) starts from it.
	BootstrapKubeconfig string `json:"bootstrapKubeconfig"`
}

// Component is one started process.
type Component struct {
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Log     string `json:"log"`
}

func summaryPath(dir string) string { return filepath.Join(dir, "cluster.json") }

func (s *Summary) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding cluster summary: %w", err)
	}
	if err := os.WriteFile(summaryPath(s.Dir), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing cluster summary: %w", err)
	}
	return nil
}

// Load reads the summary `up` left in dir.
func Load(dir string) (*Summary, error) {
	b, err := os.ReadFile(summaryPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no cluster in %s (no cluster.json): run `cluster up --dir %s` first", dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading cluster summary: %w", err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", summaryPath(dir), err)
	}
	return &s, nil
}

// ownsNetNS reports whether the namespace named s.NetNS is still the one this
// cluster created (another `up` with the same --netns replaces it).
func (s *Summary) ownsNetNS() bool {
	return s.NetNSInode != 0 && netns.Inode(s.NetNS) == s.NetNSInode
}

// OwnsNetNS is ownsNetNS for callers outside the package (cluster exec).
func (s *Summary) OwnsNetNS() bool { return s.ownsNetNS() }

func (s *Summary) netnsConfig() netns.Config {
	return netns.Config{Name: s.NetNS, HostIP: net.ParseIP(s.HostIP), IP: net.ParseIP(s.IP), PrefixLen: s.PrefixLen}
}
