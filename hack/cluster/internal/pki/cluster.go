package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Options says who the cluster's certificates are for.
type Options struct {
	Dir       string // where the files go (created)
	APIServer net.IP // the address the apiserver advertises (the netns IP)
	ServiceIP net.IP // first address of the service range: the "kubernetes" Service
	NodeName  string
	NodeIP    net.IP // the node's InternalIP; its kubelet serving cert names it
	// MetricsServerDNSNames are the names metrics-server's serving cert is
	// for besides o.APIServer (it listens on the same namespace address): the
	// aggregator verifies it as <service>.<namespace>.svc.
	MetricsServerDNSNames []string
}

// Files are the absolute paths of everything Generate writes. Pairs are
// <name>.crt/<name>.key; the field holds the path without extension.
type Files struct {
	Dir               string
	CA                string // cluster CA: client-ca, kubelet-certificate-authority, CSR signer
	APIServer         string // apiserver serving
	APIServerKubelet  string // apiserver → kubelet client (CN kube-apiserver-kubelet-client)
	FrontProxyCA      string
	FrontProxyClient  string
	Admin             string // O=system:masters
	ControllerManager string // CN=system:kube-controller-manager
	Scheduler         string // CN=system:kube-scheduler
	NodeClient        string // CN=system:node:<name>, O=system:nodes
	KubeletServing    string // the node's :10250 serving cert
	MetricsServer     string // metrics-server's serving cert (the APIService's caBundle is the cluster CA)
	// MetricsServerClient is metrics-server's identity (MetricsServerUser) towards
	// the apiserver and, through its kubeconfig, towards the node's :10250.
	MetricsServerClient string
	ServiceAccountKey   string // sa.key
	ServiceAccountPub   string // sa.pub
	NodeUser            string // system:node:<name>
}

// Crt and Key turn a pair's base path into its file names.
func Crt(base string) string { return base + ".crt" }

// Key returns the private key file of the pair whose base path is base.
func Key(base string) string { return base + ".key" }

// KubeletClientUser is the identity the apiserver uses against kubelets; the
// kubelet's webhook authorizer asks the apiserver (SubjectAccessReview) whether
// it may use nodes/proxy etc., so it is bound to system:kubelet-api-admin.
const KubeletClientUser = "kube-apiserver-kubelet-client"

// MetricsServerUser is the user name of metrics-server's client certificate;
// RBAC grants it what upstream's manifests grant the metrics-server
// ServiceAccount.
const MetricsServerUser = "metrics-server"

// Generate writes a complete, fresh PKI for one cluster into o.Dir.
func Generate(o Options) (*Files, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving pki dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pki dir: %w", err)
	}
	if o.APIServer == nil || o.ServiceIP == nil || o.NodeIP == nil || o.NodeName == "" {
		return nil, fmt.Errorf("pki options incomplete: %+v", o)
	}
	f := &Files{Dir: dir, NodeUser: "system:node:" + o.NodeName}
	p := func(name string) string { return filepath.Join(dir, name) }

	ca, err := NewCA("vk-applevm-cluster-ca")
	if err != nil {
		return nil, err
	}
	fpca, err := NewCA("vk-applevm-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	// Every name a client may use: the netns address (host and node), the
	// Service IP and DNS names (pods), loopback (components in the netns).
	sanIPs := []net.IP{o.APIServer, o.ServiceIP, net.IPv4(127, 0, 0, 1)}
	sanNames := []string{
		"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local",
	}
	type leaf struct {
		ca   *CertKey
		name string
		dst  *string
		spec Spec
	}
	leaves := []leaf{
		{ca, "apiserver", &f.APIServer, Spec{CommonName: "kube-apiserver", Server: true,
			IPs: sanIPs, DNSNames: sanNames}},
		{ca, "apiserver-kubelet-client", &f.APIServerKubelet, Spec{CommonName: KubeletClientUser, Client: true}},
		// The apiserver only trusts request headers from this exact CN
		// (--requestheader-allowed-names), signed by the front-proxy CA.
		{fpca, "front-proxy-client", &f.FrontProxyClient, Spec{CommonName: "front-proxy-client", Client: true}},
		{ca, "admin", &f.Admin, Spec{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}, Client: true}},
		// The bootstrap RBAC policy binds its roles to these exact user names.
		{ca, "controller-manager", &f.ControllerManager, Spec{CommonName: "system:kube-controller-manager", Client: true}},
		{ca, "scheduler", &f.Scheduler, Spec{CommonName: "system:kube-scheduler", Client: true}},
		// The Node authorizer and NodeRestriction key off this exact form.
		{ca, "node-client", &f.NodeClient, Spec{CommonName: f.NodeUser, Organization: []string{"system:nodes"}, Client: true}},
		// Signed by the cluster CA, which the apiserver is told to trust for
		// kubelets, so logs/exec/port-forward work without x509 errors.
		{ca, "kubelet-serving", &f.KubeletServing, Spec{CommonName: f.NodeUser, Organization: []string{"system:nodes"},
			Server: true, IPs: []net.IP{o.NodeIP}, DNSNames: []string{o.NodeName}}},
		{ca, "metrics-server", &f.MetricsServer, Spec{CommonName: MetricsServerUser, Server: true,
			IPs: []net.IP{o.APIServer}, DNSNames: o.MetricsServerDNSNames}},
		{ca, "metrics-server-client", &f.MetricsServerClient, Spec{CommonName: MetricsServerUser, Client: true}},
	}
	if err := ca.Write(dir, "ca"); err != nil {
		return nil, err
	}
	f.CA = p("ca")
	if err := fpca.Write(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	f.FrontProxyCA = p("front-proxy-ca")
	for _, l := range leaves {
		ck, err := l.ca.Issue(l.spec)
		if err != nil {
			return nil, err
		}
		if err := ck.Write(dir, l.name); err != nil {
			return nil, err
		}
		*l.dst = p(l.name)
	}
	if err := WriteServiceAccountKeys(dir); err != nil {
		return nil, err
	}
	f.ServiceAccountKey, f.ServiceAccountPub = p("sa.key"), p("sa.pub")
	return f, nil
}
