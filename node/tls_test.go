package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var testNames = certNames{NodeName: "mac-mini", Hostname: "mac-mini.local", IPs: []net.IP{net.ParseIP("127.0.0.1")}}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// handshake serves sc on loopback and connects to it as a client that
// trusts roots (nil: verification off), returning the server's leaf.
func handshake(t *testing.T, sc *servingCert, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	addr := serveHandshakes(t, sc)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// serveHandshakes serves sc's TLS on loopback, as the kubelet API does,
// completing the handshake of every connection until the test ends; it
// returns the address.
func serveHandshakes(t *testing.T, sc *servingCert) string {
	t.Helper()
	cfg := &tls.Config{}
	for _, o := range tlsOptions(sc, nil) {
		if err := o(cfg); err != nil {
			t.Fatal(err)
		}
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestServingCertificateFromFiles(t *testing.T) {
	ca := newTestCA(t, "cluster")
	certPEM, keyPEM, _ := ca.keyPair(t, "mac-mini", x509.ExtKeyUsageServerAuth, nil, testNames.IPs)
	cfg := testConfig(t)
	dir := t.TempDir()
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if os.WriteFile(cfg.TLSCertFile, certPEM, 0o644) != nil || os.WriteFile(cfg.TLSKeyFile, keyPEM, 0o600) != nil {
		t.Fatal("write certificate files")
	}
	sc, err := setupServing(context.Background(), &cfg, nil, testNames, quietLog())
	if err != nil || sc.Source() != "files" {
		t.Fatalf("setupServing = %v, %v", sc, err)
	}
	if _, err := handshake(t, sc, ca.pool()); err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
	cfg.TLSKeyFile = cfg.TLSCertFile
	if _, err := setupServing(context.Background(), &cfg, nil, testNames, quietLog()); err == nil {
		t.Fatal("a broken key file must fail")
	}
}

func TestSelfSignedWithoutCSR(t *testing.T) {
	cfg := testConfig(t)
	cfg.ServingCSR = false
	sc, err := setupServing(context.Background(), &cfg, nil, testNames, quietLog())
	if err != nil || sc.Source() != "self-signed" {
		t.Fatalf("setupServing = %v, %v", sc, err)
	}
	leaf, err := handshake(t, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !testNames.covers(leaf) || leaf.VerifyHostname("mac-mini") != nil {
		t.Fatalf("self-signed SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if _, err := handshake(t, sc, x509.NewCertPool()); err == nil {
		t.Fatal("a verifying client accepted a self-signed certificate")
	}
}

// approver plays kube-controller-manager and the admin: it checks every
// CSR the node makes against the kubelet-serving signer's rules, then
// approves and signs it with ca (deny: denies it instead).
func approver(t *testing.T, ctx context.Context, client kubernetes.Interface, ca *testCA, deny bool, seen *atomic.Int32) {
	go func() {
		for ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
			list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, c := range list.Items {
				if len(c.Status.Conditions) > 0 {
					continue
				}
				seen.Add(1)
				block, _ := pem.Decode(c.Spec.Request)
				req, err := x509.ParseCertificateRequest(block.Bytes)
				// An ECDSA key: digital signature and server auth (key
				// encipherment is for RSA keys only).
				wantUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
				if err != nil || c.Spec.SignerName != certificatesv1.KubeletServingSignerName || !slices.Equal(c.Spec.Usages, wantUsages) ||
					req.Subject.CommonName != "system:node:mac-mini" || len(req.Subject.Organization) != 1 ||
					req.Subject.Organization[0] != "system:nodes" || len(req.IPAddresses) != 1 || len(req.DNSNames) != 2 {
					t.Errorf("CSR %s does not meet the kubelet-serving signer's rules: signer %s usages %v subject %v SANs %v %v (%v)",
						c.Name, c.Spec.SignerName, c.Spec.Usages, req.Subject, req.DNSNames, req.IPAddresses, err)
					deny = true
				}
				cond := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test"}
				if deny {
					cond.Type = certificatesv1.CertificateDenied
				} else {
					c.Status.Certificate = ca.sign(t, req.PublicKey, req.Subject.CommonName, x509.ExtKeyUsageServerAuth,
						req.DNSNames, req.IPAddresses, time.Now().Add(24*time.Hour))
				}
				c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{cond}
				if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, &c, metav1.UpdateOptions{}); err != nil {
					t.Errorf("approve: %v", err)
				}
			}
		}
	}()
}

func TestServingCSRIssuedThenReused(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca := newTestCA(t, "cluster")
	client := fake.NewClientset()
	var seen atomic.Int32
	approver(t, ctx, client, ca, false, &seen)
	cfg := testConfig(t)
	sc, err := setupServing(ctx, &cfg, client, testNames, quietLog())
	if err != nil || sc.Source() != "csr" {
		t.Fatalf("setupServing = source %q, %v", sc.Source(), err)
	}
	if _, err := handshake(t, sc, ca.pool()); err != nil {
		t.Fatalf("the issued certificate does not verify against the cluster CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.CertDir, "kubelet-server-current.pem")); err != nil {
		t.Fatalf("not kept on disk: %v", err)
	}
	cancel()

	// A restart reuses the issued certificate and asks for nothing.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	refuse := fake.NewClientset()
	refuse.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("the restarted node must not create a CSR")
	})
	cfg.CSRWait = 100 * time.Millisecond
	sc2, err := setupServing(ctx2, &cfg, refuse, testNames, quietLog())
	if err != nil || sc2.Source() != "csr" {
		t.Fatalf("restart: source %q, %v", sc2.Source(), err)
	}
	if _, err := handshake(t, sc2, ca.pool()); err != nil {
		t.Fatal(err)
	}
	cancel2()

	// A new node IP that the certificate does not cover means a new CSR,
	// and the new certificate replaces the old one while serving.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	client3 := fake.NewClientset()
	var seen3 atomic.Int32
	approver(t, ctx3, client3, ca, false, &seen3)
	moved := testNames
	moved.IPs = []net.IP{net.ParseIP("127.0.0.2")}
	sc3, err := setupServing(ctx3, &cfg, client3, moved, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a certificate for the new address", func() bool {
		c, _ := sc3.GetCertificate(nil)
		return c != nil && c.Leaf != nil && len(c.Leaf.IPAddresses) == 1 && c.Leaf.IPAddresses[0].Equal(moved.IPs[0])
	})
	if n := seen3.Load(); n != 1 {
		t.Fatalf("%d CSRs for the new address, want 1", n)
	}
}

func TestServingCSRPendingFallsBackThenSwitches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca := newTestCA(t, "cluster")
	client := fake.NewClientset()
	cfg := testConfig(t)
	cfg.CSRWait = 200 * time.Millisecond
	sc, err := setupServing(ctx, &cfg, client, testNames, quietLog())
	if err != nil || sc.Source() != "self-signed" {
		t.Fatalf("setupServing = source %q, %v", sc.Source(), err)
	}
	var seen atomic.Int32
	approver(t, ctx, client, ca, false, &seen) // the admin approves late
	waitFor(t, "the issued certificate to replace the self-signed one", func() bool { return sc.Source() == "csr" })
	if _, err := handshake(t, sc, ca.pool()); err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if n := seen.Load(); n != 1 {
		t.Fatalf("%d CSRs created, want 1", n)
	}
}

func TestServingCSRDeniedFallsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	var seen atomic.Int32
	approver(t, ctx, client, newTestCA(t, "cluster"), true, &seen)
	cfg := testConfig(t)
	cfg.CSRWait = 500 * time.Millisecond
	sc, err := setupServing(ctx, &cfg, client, testNames, quietLog())
	if err != nil || sc.Source() != "self-signed" {
		t.Fatalf("setupServing = source %q, %v", sc.Source(), err)
	}
	if seen.Load() == 0 {
		t.Fatal("no CSR was made")
	}
}

func TestClientCAFromClusterOrFile(t *testing.T) {
	ca := newTestCA(t, "cluster")
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: rootCAConfigMap},
		Data:       map[string]string{"ca.crt": string(ca.pem)},
	})
	pemBytes, src, err := loadClientCA(ctx, client, "", nil)
	if err != nil || string(pemBytes) != string(ca.pem) || src != "configmap kube-system/kube-root-ca.crt" {
		t.Fatalf("loadClientCA = %q, %v", src, err)
	}
	if _, _, err := loadClientCA(ctx, fake.NewClientset(), "", nil); err == nil {
		t.Fatal("no CA anywhere must be an error")
	}
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadClientCA(ctx, client, file, nil); err == nil {
		t.Fatal("a broken CA file was accepted")
	}
}

// The CA found at the first start is pinned: a rewritten root CA ConfigMap
// is reported, not taken.
func TestClientCAPinnedAtFirstStart(t *testing.T) {
	ctx := context.Background()
	first, second := newTestCA(t, "first"), newTestCA(t, "attacker")
	cm := func(pem []byte) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: rootCAConfigMap},
			Data:       map[string]string{"ca.crt": string(pem)},
		}
	}
	pin := filepath.Join(t.TempDir(), "pki", pinnedClientCA)
	got, _, err := clientCA(ctx, fake.NewClientset(cm(first.pem)), "", nil, pin, quietLog())
	if err != nil || string(got) != string(first.pem) {
		t.Fatalf("first start: %v", err)
	}
	if fi, err := os.Stat(pin); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pinned file: %v %v", fi, err)
	}
	var logs bytes.Buffer
	got, src, err := clientCA(ctx, fake.NewClientset(cm(second.pem)), "", nil, pin, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || string(got) != string(first.pem) {
		t.Fatalf("second start took the rewritten ConfigMap's CA (%s, %v)", src, err)
	}
	if !strings.Contains(logs.String(), "differs from the one pinned") {
		t.Fatalf("the change was not reported: %s", logs.String())
	}
	// --client-ca-file wins over the pin: the operator's way to rotate.
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, second.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _, err := clientCA(ctx, nil, file, nil, pin, quietLog()); err != nil || string(got) != string(second.pem) {
		t.Fatalf("--client-ca-file: %v", err)
	}
}

// The kubelet API refuses TLS below 1.2 and CBC suites.
func TestServingTLSVersionsAndSuites(t *testing.T) {
	cfg0 := testConfig(t)
	cfg0.ServingCSR = false
	sc, err := setupServing(context.Background(), &cfg0, nil, testNames, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHandshakes(t, sc)
	dial := func(c *tls.Config) error {
		c.InsecureSkipVerify = true
		conn, err := tls.Dial("tcp", addr, c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Error("a client offering only CBC suites was served")
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2 with the defaults: %v", err)
	}
	if err := dial(&tls.Config{}); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	}
}
