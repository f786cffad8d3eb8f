package controlplane

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

// component is one process of the control plane, in start order.
type component struct {
	name string
	args []string
}

// paths are the files the components are given.
type paths struct {
	etcdData                          string
	admin, cm, scheduler, node        string // kubeconfigs
	metricsServer                     string // kubeconfig
	pki                               *pki.Files
	verbosity                         int
	advertise, serviceCIDR, apiServer string
	metricResolution                  time.Duration
	signingDuration                   time.Duration
	bootstrap                         string // the bootstrap kubeconfig
}

func etcd(p paths) component {
	return component{"etcd", []string{
		"--name=default",
		"--data-dir=" + p.etcdData,
		// Loopback inside the namespace: only the apiserver talks to etcd.
		"--listen-client-urls=" + etcdClientURL,
		"--advertise-client-urls=" + etcdClientURL,
		"--listen-peer-urls=" + etcdPeerURL,
		"--initial-advertise-peer-urls=" + etcdPeerURL,
		"--initial-cluster=default=" + etcdPeerURL,
		"--initial-cluster-state=new",
		// A throwaway single-member cluster: trade durability for speed.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}}
}

func apiserver(p paths) component {
	f := p.pki
	return component{"kube-apiserver", []string{
		"--etcd-servers=" + etcdClientURL,
		"--bind-address=0.0.0.0", // all of the namespace: lo and the veth
		fmt.Sprintf("--secure-port=%d", APIServerPort),
		// Required in a namespace; also what the "kubernetes" endpoints say.
		"--advertise-address=" + p.advertise,
		"--tls-cert-file=" + pki.Crt(f.APIServer),
		"--tls-private-key-file=" + pki.Key(f.APIServer),
		"--client-ca-file=" + pki.Crt(f.CA),
		"--authorization-mode=Node,RBAC",
		// TLS bootstrapping: nodes join with a bootstrap token (kubeadm's way).
		"--enable-bootstrap-token-auth=true",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		// Verify the node's :10250 serving cert (signed by the cluster CA) and
		// present a client cert the node's webhook authz can check.
		"--kubelet-certificate-authority=" + pki.Crt(f.CA),
		"--kubelet-client-certificate=" + pki.Crt(f.APIServerKubelet),
		"--kubelet-client-key=" + pki.Key(f.APIServerKubelet),
		// The node registers an InternalIP; a Hostname address would not resolve.
		"--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
		// Service-account tokens (TokenRequest, projected volumes).
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f.ServiceAccountPub,
		"--service-account-signing-key-file=" + f.ServiceAccountKey,
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + p.serviceCIDR,
		// Aggregation layer (metrics-server and other extension apiservers).
		"--requestheader-client-ca-file=" + pki.Crt(f.FrontProxyCA),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki.Crt(f.FrontProxyClient),
		"--proxy-client-key-file=" + pki.Key(f.FrontProxyClient),
		"--enable-aggregator-routing=true", // no kube-proxy: route to endpoints directly
		"--profiling=false",
		fmt.Sprintf("--v=%d", p.verbosity),
	}}
}

func controllerManager(p paths) component {
	f := p.pki
	var extra []string
	if p.signingDuration > 0 {
		extra = append(extra, "--cluster-signing-duration="+p.signingDuration.String())
	}
	return component{"kube-controller-manager", append([]string{
		"--kubeconfig=" + p.cm,
		"--authentication-kubeconfig=" + p.cm,
		"--authorization-kubeconfig=" + p.cm,
		"--bind-address=127.0.0.1",
		"--leader-elect=true", // its Lease is how `up` knows it is working
		// Each controller under its own service account, as in real clusters,
		// so RBAC mistakes surface here rather than in production.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + f.ServiceAccountKey,
		"--root-ca-file=" + pki.Crt(f.CA), // kube-root-ca.crt ConfigMaps
		// The CSR signer: kubelet-serving and client CSRs get signed by the CA.
		"--cluster-signing-cert-file=" + pki.Crt(f.CA),
		"--cluster-signing-key-file=" + pki.Key(f.CA),
		"--service-cluster-ip-range=" + p.serviceCIDR,
		// csrapproving (in *) approves node client CSRs; bootstrapsigner and
		// tokencleaner look after bootstrap tokens, as in kubeadm clusters.
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--profiling=false",
		fmt.Sprintf("--v=%d", p.verbosity),
	}, extra...)}
}

func scheduler(p paths) component {
	return component{"kube-scheduler", []string{
		"--kubeconfig=" + p.scheduler,
		"--authentication-kubeconfig=" + p.scheduler,
		"--authorization-kubeconfig=" + p.scheduler,
		"--bind-address=127.0.0.1",
		"--leader-elect=true",
		"--profiling=false",
		fmt.Sprintf("--v=%d", p.verbosity),
	}}
}

// kubeconfigs writes one kubeconfig per client identity; all point at the
// namespace address so the same files work inside the namespace and from
// the host.
func kubeconfigs(p paths) error {
	f := p.pki
	for _, k := range []struct{ path, user, pair string }{
		{p.admin, "kubernetes-admin", f.Admin},
		{p.cm, "system:kube-controller-manager", f.ControllerManager},
		{p.scheduler, "system:kube-scheduler", f.Scheduler},
		{p.node, f.NodeUser, f.NodeClient},
		{p.metricsServer, pki.MetricsServerUser, f.MetricsServerClient},
	} {
		if err := pki.WriteKubeconfig(k.path, p.apiServer, k.user, f.CA, k.pair); err != nil {
			return err
		}
	}
	return nil
}

func newPaths(c Config, f *pki.Files) paths {
	j := func(n string) string { return filepath.Join(c.Dir, n) }
	return paths{
		etcdData:         j("etcd"),
		admin:            j("admin.kubeconfig"),
		cm:               j("controller-manager.kubeconfig"),
		scheduler:        j("scheduler.kubeconfig"),
		node:             j("node.kubeconfig"),
		metricsServer:    j("metrics-server.kubeconfig"),
		pki:              f,
		verbosity:        c.Verbosity,
		advertise:        c.NetNS.IP.String(),
		serviceCIDR:      ServiceCIDR,
		apiServer:        fmt.Sprintf("https://%s:%d", c.NetNS.IP, APIServerPort),
		metricResolution: c.MetricResolution,
		signingDuration:  c.SigningDuration,
		bootstrap:        j("bootstrap.kubeconfig"),
	}
}
