package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestDigestedCSRNameIsStablePerKeyAndSubject(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	a, err := digestedCSRName(k1.Public(), nodeSubject("mac"), usages)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := digestedCSRName(k1.Public(), nodeSubject("mac"), usages)
	c, _ := digestedCSRName(k2.Public(), nodeSubject("mac"), usages)
	d, _ := digestedCSRName(k1.Public(), nodeSubject("other"), usages)
	if a != b || a == c || a == d || !strings.HasPrefix(a, "node-csr-") || len(a) > 253 {
		t.Fatalf("names %q %q %q %q", a, b, c, d)
	}
}

// TestCertKubeconfigRoundTrip: the kubeconfig written after bootstrapping
// points at the pair file and keeps the bootstrap kubeconfig's server and
// CA; it is valid while the certificate is, and the certificate is
// recognised as the node's own (so it is rotated).
func TestCertKubeconfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "cluster")
	certPEM, keyPEM, _ := ca.keyPair(t, "system:node:mac", x509.ExtKeyUsageClientAuth, nil, nil)
	pair := filepath.Join(dir, "kubelet-client-current.pem")
	if err := os.WriteFile(pair, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "sub", "kubelet.kubeconfig")
	boot := &rest.Config{Host: "https://10.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}
	if err := writeCertKubeconfig(boot, kc, pair); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != boot.Host || string(rc.CAData) != string(ca.pem) || rc.CertFile != pair || rc.KeyFile != pair {
		t.Fatalf("kubeconfig: host %s cert %s key %s", rc.Host, rc.CertFile, rc.KeyFile)
	}
	if ok, err := clientConfigValid(kc, time.Now()); !ok {
		t.Fatalf("valid kubeconfig refused: %v", err)
	}
	if ok, _ := clientConfigValid(kc, time.Now().Add(48*time.Hour)); ok {
		t.Fatal("a kubeconfig with an expired certificate passed as valid")
	}
	if ok, _ := clientConfigValid(filepath.Join(dir, "none"), time.Now()); ok {
		t.Fatal("a missing kubeconfig passed as valid")
	}
	if why := nodeCertificate(rc, "mac"); why != "" {
		t.Fatalf("the node's own certificate not recognised: %s", why)
	}
	if why := nodeCertificate(rc, "other"); why == "" {
		t.Fatal("another node's certificate recognised as ours")
	}
	if why := nodeCertificate(&rest.Config{BearerToken: "t"}, "mac"); why == "" {
		t.Fatal("a token kubeconfig recognised as a node certificate")
	}
}
