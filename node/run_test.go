package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// fakeCluster is the API server the node talks to: a fake clientset for
// objects, and a real HTTP endpoint for TokenReviews and
// SubjectAccessReviews (the apiserver's webhook clients use the REST client
// directly, which the fake clientset does not have). Token "admin" and the
// API server's client-certificate user may do anything, token "viewer" is
// a known user allowed nothing, any other token is unknown.
type fakeCluster struct {
	*fake.Clientset
	authn authenticationv1client.AuthenticationV1Interface
	authz authorizationv1client.AuthorizationV1Interface
	mu    sync.Mutex
	sars  []authorizationv1.SubjectAccessReviewSpec
}

func (c *fakeCluster) AuthenticationV1() authenticationv1client.AuthenticationV1Interface {
	return c.authn
}
func (c *fakeCluster) AuthorizationV1() authorizationv1client.AuthorizationV1Interface {
	return c.authz
}

const apiserverClientUser = "kube-apiserver-kubelet-client"

func newFakeCluster(t *testing.T, ca *testCA) *fakeCluster {
	c := &fakeCluster{Clientset: fake.NewClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: rootCAConfigMap},
		Data:       map[string]string{"ca.crt": string(ca.pem)},
	})}
	srv := httptest.NewServer(http.HandlerFunc(c.serveReview))
	t.Cleanup(srv.Close)
	real, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c.authn, c.authz = real.AuthenticationV1(), real.AuthorizationV1()
	return c
}

func (c *fakeCluster) serveReview(w http.ResponseWriter, r *http.Request) {
	var out any
	switch r.URL.Path {
	case "/apis/authentication.k8s.io/v1/tokenreviews":
		var tr authenticationv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch tr.Spec.Token {
		case "admin", "viewer":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: tr.Spec.Token}}
		}
		out = &tr
	case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		var sar authorizationv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.sars = append(c.sars, sar.Spec)
		c.mu.Unlock()
		sar.Status.Allowed = sar.Spec.User == "admin" || sar.Spec.User == apiserverClientUser
		out = &sar
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (c *fakeCluster) reviews() []authorizationv1.SubjectAccessReviewSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]authorizationv1.SubjectAccessReviewSpec(nil), c.sars...)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// kubeletClient calls the node's kubelet API as a client with an optional
// bearer token or certificate.
type kubeletClient struct {
	addr  string
	token string
	cert  *tls.Certificate
}

func (k kubeletClient) get(path string) (int, []byte, error) {
	tc := &tls.Config{InsecureSkipVerify: true} // the node serves a self-signed certificate here
	if k.cert != nil {
		// Always present it (Go's default only sends a certificate the
		// server's acceptable-CA list names).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return k.cert, nil }
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "https://"+k.addr+path, nil)
	if k.token != "" {
		req.Header.Set("Authorization", "Bearer "+k.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunServesAuthenticatedKubeletAPI runs the whole node against a fake
// API server: registration, the HTTPS kubelet API behind webhook auth
// (401 / 403 / 200, tokens and client certificates), and a health change
// reaching the node's Ready condition.
func TestRunServesAuthenticatedKubeletAPI(t *testing.T) {
	clusterCA := newTestCA(t, "cluster")
	cluster := newFakeCluster(t, clusterCA)
	rt := &stubRuntime{}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.NodeIP, cfg.Hostname = "mac", "127.0.0.1", "mac"
	cfg.Client = cluster
	cfg.ListenAddr = freePort(t)
	cfg.ServingCSR = false
	cfg.StatusInterval = 100 * time.Millisecond
	cfg.DiskMinFreeBytes = 1 // the test machine's disk is not under test
	cfg.Provider.Root, cfg.Provider.Runtime = t.TempDir(), rt
	cfg.Logger = testLogger()

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, cfg) }()
	defer func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run after cancel: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}()

	var node *corev1.Node
	waitFor(t, "the node to register", func() bool {
		n, err := cluster.CoreV1().Nodes().Get(ctx, "mac", metav1.GetOptions{})
		node = n
		return err == nil
	})
	anon := kubeletClient{addr: cfg.ListenAddr}
	waitFor(t, "the kubelet API to listen", func() bool { _, _, err := anon.get("/pods"); return err == nil })

	if code, _, _ := anon.get("/pods"); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code, _, _ := (kubeletClient{addr: cfg.ListenAddr, token: "stolen"}).get("/pods"); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d, want 401", code)
	}
	if code, _, _ := (kubeletClient{addr: cfg.ListenAddr, token: "viewer"}).get("/stats/summary"); code != http.StatusForbidden {
		t.Errorf("authenticated but not authorized: %d, want 403", code)
	}
	admin := kubeletClient{addr: cfg.ListenAddr, token: "admin"}
	if code, body, _ := admin.get("/pods"); code != http.StatusOK || !strings.Contains(string(body), `"kind":"PodList"`) {
		t.Errorf("admin GET /pods: %d %s", code, body)
	}
	code, body, _ := admin.get("/stats/summary")
	var sum statsv1alpha1.Summary
	if code != http.StatusOK || json.Unmarshal(body, &sum) != nil || sum.Node.NodeName != "mac" || sum.Node.Memory == nil {
		t.Errorf("admin GET /stats/summary: %d %s", code, body)
	}

	// The API server authenticates with a client certificate from the
	// cluster CA; a certificate from another CA is refused in the handshake.
	_, _, apiserverCert := clusterCA.keyPair(t, apiserverClientUser, x509.ExtKeyUsageClientAuth, nil, nil)
	if code, _, err := (kubeletClient{addr: cfg.ListenAddr, cert: &apiserverCert}).get("/metrics/resource"); code != http.StatusOK {
		t.Errorf("API server client certificate: %d %v", code, err)
	}
	_, _, rogue := newTestCA(t, "rogue").keyPair(t, apiserverClientUser, x509.ExtKeyUsageClientAuth, nil, nil)
	if code, _, err := (kubeletClient{addr: cfg.ListenAddr, cert: &rogue}).get("/pods"); err == nil {
		t.Errorf("a client certificate from another CA was accepted: %d", code)
	}

	// Every request was authorized against nodes/mac/<subresource>.
	subs := map[string]bool{}
	for _, r := range cluster.reviews() {
		ra := r.ResourceAttributes
		if ra == nil || ra.Resource != "nodes" || ra.Name != "mac" || ra.Verb != "get" {
			t.Errorf("SubjectAccessReview %+v", r)
			continue
		}
		subs[r.User+":"+ra.Subresource] = true
	}
	for _, want := range []string{"admin:proxy", "viewer:stats", "admin:stats", apiserverClientUser + ":metrics"} {
		if !subs[want] {
			t.Errorf("no SubjectAccessReview for %s in %v", want, subs)
		}
	}

	// The registered node object.
	if node.Labels["type"] != "virtual-kubelet" || node.Labels["kubernetes.io/os"] != "linux" || len(node.Spec.Taints) != 1 ||
		node.Spec.Taints[0].Key != "virtual-kubelet.io/provider" || node.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 ||
		len(node.Status.Addresses) != 2 || node.Status.Addresses[0].Address != "127.0.0.1" {
		t.Errorf("registered node = %+v", node)
	}
	if _, err := cluster.CoordinationV1().Leases("kube-node-lease").Get(ctx, "mac", metav1.GetOptions{}); err != nil {
		t.Errorf("node lease: %v", err)
	}
	ready := func() corev1.NodeCondition {
		n, err := cluster.CoreV1().Nodes().Get(ctx, "mac", metav1.GetOptions{})
		if err != nil {
			return corev1.NodeCondition{}
		}
		return condition(n, corev1.NodeReady)
	}
	waitFor(t, "Ready=True", func() bool { return ready().Status == corev1.ConditionTrue })

	// The hypervisor breaks: the reason reaches the API server.
	rt.setCheck(errors.New("hypervisor unusable: probe boot failed"))
	waitFor(t, "Ready=False with the reason", func() bool {
		c := ready()
		return c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "probe boot failed")
	})
}
