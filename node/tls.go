package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate"
)

// servingCert is the kubelet API's certificate: the files given, or the
// certificate manager's current kubelet-serving certificate (renewed before
// it expires, without a restart), with a self-signed stand-in while the
// cluster has issued none.
type servingCert struct {
	fixed       atomic.Pointer[tls.Certificate]
	fixedSource string
	mgr         certificate.Manager // nil without ServingCSR
}

// current is the certificate to serve and where it came from.
func (s *servingCert) current() (*tls.Certificate, string) {
	if s.mgr != nil {
		if c := s.mgr.Current(); c != nil {
			return c, "csr"
		}
	}
	return s.fixed.Load(), s.fixedSource
}

// Source says where the current certificate came from: "files", "csr"
// or "self-signed".
func (s *servingCert) Source() string { _, src := s.current(); return src }

// GetCertificate is the tls.Config hook.
func (s *servingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _ := s.current()
	return c, nil
}

// certNames are the names the serving certificate must carry: what the API
// server dials (node addresses) and what it verifies against.
type certNames struct {
	NodeName, Hostname string
	IPs                []net.IP
}

func (n certNames) dnsNames() []string {
	var out []string
	for _, s := range []string{n.NodeName, n.Hostname} {
		if s != "" && !slices.Contains(out, s) && net.ParseIP(s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// covers reports whether cert is valid for every name and IP.
func (n certNames) covers(cert *x509.Certificate) bool {
	for _, h := range n.dnsNames() {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	for _, ip := range n.IPs {
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

// setupServing picks the serving certificate: the files given, else a
// kubelet-serving certificate from the cluster, requested and renewed by
// client-go's certificate manager (kept in CertDir as
// kubelet-server-current.pem, reused across restarts while valid), else a
// self-signed one. At start it waits up to cfg.CSRWait for the cluster to
// issue one, then serves the self-signed stand-in until it does. The
// manager stops when ctx ends.
func setupServing(ctx context.Context, cfg *Config, client kubernetes.Interface, names certNames, log *slog.Logger) (*servingCert, error) {
	sc := &servingCert{}
	if cfg.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load serving certificate %s: %w", cfg.TLSCertFile, err)
		}
		sc.fixed.Store(&c)
		sc.fixedSource = "files"
		return sc, nil
	}
	self, err := selfSignedCert(names, time.Now())
	if err != nil {
		return nil, err
	}
	sc.fixed.Store(self)
	sc.fixedSource = "self-signed"
	warnSelfSigned := func() {
		log.Warn("SERVING A SELF-SIGNED CERTIFICATE on the kubelet API: an API server with --kubelet-certificate-authority " +
			"fails kubectl logs/exec/port-forward with x509 errors, and metrics-server needs --kubelet-insecure-tls; " +
			"pass --tls-cert-file/--tls-private-key-file or approve the node's kubelet-serving CSR")
	}
	if !cfg.ServingCSR || client == nil {
		warnSelfSigned()
		return sc, nil
	}
	mgr, err := newServingManager(ctx, cfg, client, names)
	if err != nil {
		return nil, err
	}
	sc.mgr = mgr
	mgr.Start()
	go func() {
		<-ctx.Done()
		mgr.Stop()
	}()
	if mgr.Current() != nil {
		log.Info("serving the kubelet-serving certificate the cluster issued", "dir", cfg.CertDir)
		return sc, nil
	}
	log.Warn("WAITING FOR APPROVAL of the node's kubelet-serving CSR: `kubectl get csr` shows it, "+
		"`kubectl certificate approve NAME` approves it", "wait", cfg.CSRWait)
	wctx, cancel := context.WithTimeout(ctx, cfg.CSRWait)
	defer cancel()
	if waitCurrent(wctx, mgr) {
		log.Info("serving the certificate the cluster issued")
		return sc, nil
	}
	warnSelfSigned()
	go func() {
		if waitCurrent(ctx, mgr) {
			log.Info("CSR approved: now serving the certificate the cluster issued")
		}
	}()
	return sc, nil
}

// waitCurrent waits until the manager has a certificate or ctx ends.
func waitCurrent(ctx context.Context, mgr certificate.Manager) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for mgr.Current() == nil {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// selfSignedCert makes a one-year ECDSA certificate for names.
func selfSignedCert(names certNames, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// host@timestamp, as the kubelet names its self-signed certificate.
		Subject:     pkix.Name{CommonName: names.NodeName + "@" + fmt.Sprint(now.Unix())},
		NotBefore:   now.Add(-time.Hour), // tolerate clock skew
		NotAfter:    now.Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    names.dnsNames(),
		IPAddresses: names.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
