package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/connrotation"
)

// The kubelet's defaults for its API clients (KubeletConfiguration
// kubeAPIQPS/kubeAPIBurst and eventRecordQPS/eventBurst): client-go's own
// (5 per second, bursts of 10) make a node with a hundred pods push their
// statuses over tens of seconds, and the kubelet records events through a
// client of its own so that they never wait for, or hold up, status updates.
const (
	kubeAPIQPS     = 50
	kubeAPIBurst   = 100
	eventRecordQPS = 50
	eventBurst     = 100
)

// KubeletRateLimits returns copies of rc for the node's API client and its
// event client, with the kubelet's rate limits; each clientset made from
// them has a rate limiter of its own.
func KubeletRateLimits(rc *rest.Config) (api, events *rest.Config) {
	api, events = rest.CopyConfig(rc), rest.CopyConfig(rc)
	api.QPS, api.Burst = kubeAPIQPS, kubeAPIBurst
	events.QPS, events.Burst = eventRecordQPS, eventBurst
	return api, events
}

// apiClient is the node's connection to the API server.
type apiClient struct {
	client kubernetes.Interface
	// events records events, with a rate limit of its own.
	events kubernetes.Interface
	// caPEM is the CA the kubeconfig trusts: in kubeadm-style clusters it
	// also signs the API server's kubelet client certificate.
	caPEM []byte
	// certs renews the client certificate; nil when the node does not
	// authenticate with a node certificate (token, admin certificate).
	certs certificate.Manager
}

// newAPIClient bootstraps the node's identity when asked to and builds its
// client. With RotateCertificates and a node client certificate, the
// client presents whatever certificate the manager holds, and connections
// are closed when it changes so the next request uses the new one
// (k8s.io/kubernetes/pkg/kubelet/certificate.UpdateTransport).
func newAPIClient(ctx context.Context, cfg *Config, log *slog.Logger) (*apiClient, error) {
	if cfg.BootstrapKubeconfig != "" {
		if err := bootstrapClientCert(ctx, cfg.Kubeconfig, cfg.BootstrapKubeconfig, cfg.CertDir, cfg.NodeName, log); err != nil {
			return nil, fmt.Errorf("TLS bootstrap: %w", err)
		}
	}
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	ac := &apiClient{caPEM: rc.CAData}
	if len(ac.caPEM) == 0 && rc.CAFile != "" {
		ac.caPEM, _ = os.ReadFile(rc.CAFile)
	}
	if cfg.RotateCertificates {
		if why := nodeCertificate(rc, cfg.NodeName); why != "" {
			log.Info("client certificate rotation off", "reason", why)
		} else if err := ac.rotate(ctx, cfg, rc); err != nil {
			return nil, err
		}
	}
	api, events := KubeletRateLimits(rc)
	if ac.client, err = kubernetes.NewForConfig(api); err != nil {
		return nil, fmt.Errorf("build API client: %w", err)
	}
	if ac.events, err = kubernetes.NewForConfig(events); err != nil {
		return nil, fmt.Errorf("build event client: %w", err)
	}
	return ac, nil
}

// restConfig loads a kubeconfig; empty means in-cluster.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

// nodeCertificate says why rc does not authenticate with a client
// certificate for system:node:<nodeName> ("" when it does): only such a
// certificate is renewed, so an admin's kubeconfig never turns into a node
// identity behind the user's back.
func nodeCertificate(rc *rest.Config, nodeName string) string {
	data := rc.CertData
	if len(data) == 0 && rc.CertFile != "" {
		b, err := os.ReadFile(rc.CertFile)
		if err != nil {
			return err.Error()
		}
		data = b
	}
	if len(data) == 0 {
		return "the kubeconfig has no client certificate"
	}
	certs, err := cert.ParseCertsPEM(data)
	if err != nil {
		return err.Error()
	}
	want := nodeSubject(nodeName)
	if s := certs[0].Subject; s.CommonName != want.CommonName || !slices.Contains(s.Organization, "system:nodes") {
		return fmt.Sprintf("the kubeconfig's client certificate is for %q, not %q in system:nodes", s.CommonName, want.CommonName)
	}
	return ""
}

// rotate makes rc present the certificate manager's current client
// certificate.
func (ac *apiClient) rotate(ctx context.Context, cfg *Config, rc *rest.Config) error {
	if err := os.MkdirAll(cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir: %w", err)
	}
	store, err := certificate.NewFileStore(clientPairPrefix, cfg.CertDir, cfg.CertDir, rc.CertFile, rc.KeyFile)
	if err != nil {
		return fmt.Errorf("client certificate store in %s: %w", cfg.CertDir, err)
	}
	mgr, err := certificate.NewManager(&certificate.Config{
		// Renewals are requested as the node itself (the selfnodeclient
		// approval), through the rotating client.
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) { return ac.client, nil },
		Template:    &x509.CertificateRequest{Subject: *nodeSubject(cfg.NodeName)},
		SignerName:  certificatesv1.KubeAPIServerClientKubeletSignerName,
		GetUsages:   certificate.DefaultKubeletClientGetUsages,
		// Embedded pairs (no files) seed the store.
		BootstrapCertificatePEM: rc.CertData,
		BootstrapKeyPEM:         rc.KeyData,
		CertificateStore:        store,
		Name:                    "kubelet-client",
		Ctx:                     &ctx,
	})
	if err != nil {
		return fmt.Errorf("client certificate manager: %w", err)
	}
	if mgr.Current() == nil {
		return fmt.Errorf("no usable client certificate in the kubeconfig or %s", cfg.CertDir)
	}
	if err := rotatingTransport(ctx, rc, mgr, time.Second); err != nil {
		return err
	}
	ac.certs = mgr
	return nil
}

// rotatingTransport is UpdateTransport of the kubelet (pkg/kubelet/
// certificate/transport.go), without its exit-on-expiry: TLS handshakes
// take the manager's current certificate, and every open connection is
// closed when it changes, so long-running watches reconnect with the new
// one instead of carrying the old one to its expiry.
func rotatingTransport(ctx context.Context, rc *rest.Config, mgr certificate.Manager, period time.Duration) error {
	tlsConfig, err := rest.TLSConfigFor(rc)
	if err != nil {
		return fmt.Errorf("TLS config: %w", err)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig.Certificates = nil
	tlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := mgr.Current(); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil
	}
	dialer := connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	last := mgr.Current()
	go wait.Until(func() {
		if cur := mgr.Current(); cur != nil && cur != last {
			last = cur
			dialer.CloseAll()
		}
	}, period, ctx.Done())
	rc.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 25,
		DialContext:         dialer.DialContext,
	})
	// The transport carries the TLS settings now; rest refuses both.
	rc.TLSClientConfig = rest.TLSClientConfig{}
	return nil
}
