package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func generate(t *testing.T) *Files {
	t.Helper()
	f, err := Generate(Options{
		Dir:                   t.TempDir(),
		APIServer:             net.ParseIP("10.201.0.2"),
		ServiceIP:             net.ParseIP("10.0.0.1"),
		NodeName:              "mac-1",
		NodeIP:                net.ParseIP("10.201.0.2"),
		MetricsServerDNSNames: []string{"metrics-server.kube-system.svc"},
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return f
}

func load(t *testing.T, base string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(Crt(base))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", Crt(base))
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The pair must also load as a TLS key pair (catches a key/cert mix-up).
	if _, err := tls.LoadX509KeyPair(Crt(base), Key(base)); err != nil {
		t.Fatalf("%s: %v", base, err)
	}
	return c
}

func pool(t *testing.T, base string) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(load(t, base))
	return p
}

func TestAPIServerSANsAndChain(t *testing.T) {
	f := generate(t)
	c := load(t, f.APIServer)
	for _, name := range []string{"10.201.0.2", "10.0.0.1", "127.0.0.1", "localhost",
		"kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} {
		_, err := c.Verify(x509.VerifyOptions{
			DNSName:   name,
			Roots:     pool(t, f.CA),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("apiserver cert for %q: %v", name, err)
		}
	}
	if err := c.VerifyHostname("10.201.0.3"); err == nil {
		t.Error("apiserver cert unexpectedly valid for 10.201.0.3")
	}
}

func TestClientCertsIdentitiesAndChains(t *testing.T) {
	f := generate(t)
	cases := []struct {
		base, cn, org string
		root          string
	}{
		{f.Admin, "kubernetes-admin", "system:masters", f.CA},
		{f.ControllerManager, "system:kube-controller-manager", "", f.CA},
		{f.Scheduler, "system:kube-scheduler", "", f.CA},
		{f.NodeClient, "system:node:mac-1", "system:nodes", f.CA},
		{f.APIServerKubelet, KubeletClientUser, "", f.CA},
		{f.MetricsServerClient, MetricsServerUser, "", f.CA},
		{f.FrontProxyClient, "front-proxy-client", "", f.FrontProxyCA},
	}
	for _, tc := range cases {
		c := load(t, tc.base)
		if c.Subject.CommonName != tc.cn {
			t.Errorf("%s: CN %q, want %q", tc.base, c.Subject.CommonName, tc.cn)
		}
		if tc.org != "" && !slices.Equal(c.Subject.Organization, []string{tc.org}) {
			t.Errorf("%s: O %v, want %q", tc.base, c.Subject.Organization, tc.org)
		}
		if _, err := c.Verify(x509.VerifyOptions{
			Roots:     pool(t, tc.root),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			t.Errorf("%s: client chain: %v", tc.base, err)
		}
		// A client cert must not be usable to impersonate a server.
		if _, err := c.Verify(x509.VerifyOptions{
			Roots:     pool(t, tc.root),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err == nil {
			t.Errorf("%s: client cert verifies for server auth", tc.base)
		}
	}
	// The front-proxy client must not be accepted as an ordinary client.
	if _, err := load(t, f.FrontProxyClient).Verify(x509.VerifyOptions{
		Roots: pool(t, f.CA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err == nil {
		t.Error("front-proxy client verifies against the cluster CA")
	}
}

func TestKubeletServingCert(t *testing.T) {
	f := generate(t)
	c := load(t, f.KubeletServing)
	for _, name := range []string{"10.201.0.2", "mac-1"} {
		if _, err := c.Verify(x509.VerifyOptions{
			DNSName: name, Roots: pool(t, f.CA),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			t.Errorf("kubelet serving cert for %q: %v", name, err)
		}
	}
}

// The aggregator dials the endpoint IP but verifies the name
// <service>.<namespace>.svc against the APIService's caBundle (the cluster CA);
// `cluster up` itself checks metrics-server's /livez by IP.
func TestMetricsServerServingCert(t *testing.T) {
	f := generate(t)
	c := load(t, f.MetricsServer)
	for _, name := range []string{"metrics-server.kube-system.svc", "10.201.0.2"} {
		if _, err := c.Verify(x509.VerifyOptions{
			DNSName: name, Roots: pool(t, f.CA),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			t.Errorf("metrics-server serving cert for %q: %v", name, err)
		}
	}
	if err := c.VerifyHostname("metrics-server.default.svc"); err == nil {
		t.Error("metrics-server serving cert unexpectedly valid for another namespace's service")
	}
}

func TestCAAndKeyFiles(t *testing.T) {
	f := generate(t)
	if ca := load(t, f.CA); !ca.IsCA {
		t.Error("cluster CA is not a CA")
	}
	for _, p := range []string{Key(f.CA), Key(f.Admin), f.ServiceAccountKey} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	pub, err := os.ReadFile(f.ServiceAccountPub)
	if err != nil || !strings.Contains(string(pub), "PUBLIC KEY") {
		t.Errorf("sa.pub: %v %q", err, pub)
	}
}

func TestKubeconfig(t *testing.T) {
	f := generate(t)
	path := filepath.Join(t.TempDir(), "node.kubeconfig")
	if err := WriteKubeconfig(path, "https://10.201.0.2:6443", "system:node:mac-1", f.CA, f.NodeClient); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server: https://10.201.0.2:6443", `name: "system:node:mac-1"`, "client-key-data: "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, b)
		}
	}
}
