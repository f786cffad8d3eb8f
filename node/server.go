package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// newAuth is the kubelet's webhook authn/authz: bearer tokens through
// TokenReview, client certificates against caPEM (nil: none accepted),
// every request authorized by a SubjectAccessReview on nodes/<name>/<sub>.
func newAuth(client kubernetes.Interface, nodeName string, caPEM []byte) (nodeutil.Auth, error) {
	var ca dynamiccertificates.CAContentProvider
	if len(caPEM) > 0 {
		var err error
		if ca, err = dynamiccertificates.NewStaticCAContent("client-ca", caPEM); err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
	}
	auth, err := nodeutil.WebhookAuth(client, nodeName, func(c *nodeutil.WebhookAuthConfig) error {
		// Without it x509 client certificates authenticate nobody.
		c.AuthnConfig.ClientCertificateCAContentProvider = ca
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook auth: %w", err)
	}
	return streamsNeedCreate{auth}, nil
}

// streamsNeedCreate authorizes exec, attach, port-forward and run as
// `create` on nodes/proxy whatever the HTTP method. virtual-kubelet derives
// the verb from the method, and a WebSocket upgrade (kubectl's default
// since 1.30) arrives as GET: read-only `get nodes/proxy` credentials, as
// monitoring agents hold, would open a shell in every pod.
type streamsNeedCreate struct{ nodeutil.Auth }

func (a streamsNeedCreate) GetRequestAttributes(u user.Info, r *http.Request) authorizer.Attributes {
	attrs := a.Auth.GetRequestAttributes(u, r)
	rec, ok := attrs.(authorizer.AttributesRecord)
	if !ok || !isStreamPath(r.URL.Path) {
		return attrs
	}
	rec.Verb = "create"
	return rec
}

// isStreamPath reports whether path opens a process or a tunnel in a pod.
func isStreamPath(path string) bool {
	for _, p := range []string{"/exec/", "/attach/", "/portForward/", "/run/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// streamTimeouts are the exec/attach/port-forward stream limits.
type streamTimeouts struct{ idle, creation time.Duration }

// attachRoutes serves the provider's kubelet API on mux. mux must already
// sit behind nodeutil.WithAuth: routes are added to it, never replace it.
//
// virtual-kubelet v1.14.1's PodHandler passes the port-forward timeouts
// crossed (idle gets the creation timeout and the other way round), so
// /portForward/ is served by a second handler built with them swapped.
func attachRoutes(mux *http.ServeMux, p nodeutil.Provider, pods corev1listers.PodLister, t streamTimeouts) {
	cfg := api.PodHandlerConfig{
		RunInContainer:    p.RunInContainer,
		AttachToContainer: p.AttachToContainer,
		PortForward:       p.PortForward,
		GetContainerLogs:  p.GetContainerLogs,
		GetPods:           p.GetPods,
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) {
			return pods.List(labels.Everything())
		},
		GetStatsSummary:       p.GetStatsSummary,
		GetMetricsResource:    p.GetMetricsResource,
		StreamIdleTimeout:     t.idle,
		StreamCreationTimeout: t.creation,
	}
	mux.Handle("/", api.InstrumentHandler(api.PodHandler(cfg, true)))
	mux.Handle("/portForward/", api.InstrumentHandler(api.PodHandler(portForwardConfig(cfg), true)))
}

// portForwardConfig compensates for PodHandler's crossed port-forward
// options.
func portForwardConfig(cfg api.PodHandlerConfig) api.PodHandlerConfig {
	cfg.StreamIdleTimeout, cfg.StreamCreationTimeout = cfg.StreamCreationTimeout, cfg.StreamIdleTimeout
	return cfg
}

// tlsOptions configure virtual-kubelet's TLS config: our certificate (which
// may change), and client certificates verified against the cluster CA when
// given (the API server presents one; token clients do not).
func tlsOptions(sc *servingCert, caPEM []byte) []func(*tls.Config) error {
	opts := []func(*tls.Config) error{func(c *tls.Config) error {
		c.GetCertificate = sc.GetCertificate
		// TLS 1.2 and up, and of 1.2's suites only the AEAD ones with
		// forward secrecy: no CBC (Lucky13-style padding oracles), no RSA
		// key exchange. TLS 1.3's suites are not configurable and all AEAD.
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}
		return nil
	}}
	if len(caPEM) > 0 {
		opts = append(opts, nodeutil.WithCACert(caPEM), func(c *tls.Config) error {
			c.ClientAuth = tls.VerifyClientCertIfGiven
			return nil
		})
	}
	return opts
}
