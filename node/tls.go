package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
)

// servingCert is the kubelet API's certificate. A CSR issued after the
// node started replaces the self-signed stand-in without a restart.
type servingCert struct {
	cur    atomic.Pointer[tls.Certificate]
	source atomic.Pointer[string]
}

func (s *servingCert) set(c *tls.Certificate, source string) {
	s.cur.Store(c)
	s.source.Store(&source)
}

// Source says where the current certificate came from: "files", "csr"
// or "self-signed".
func (s *servingCert) Source() string { return *s.source.Load() }

// GetCertificate is the tls.Config hook.
func (s *servingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
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
// kubelet-serving certificate from the cluster (reused from disk while
// valid, else requested through a CSR and waited for up to cfg.CSRWait),
// else a self-signed one. If the CSR is still pending it returns a
// function that keeps waiting and switches to the issued certificate.
func setupServing(ctx context.Context, cfg *Config, client kubernetes.Interface, names certNames, log *slog.Logger) (*servingCert, func(context.Context), error) {
	sc := &servingCert{}
	if cfg.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("load serving certificate %s: %w", cfg.TLSCertFile, err)
		}
		sc.set(&c, "files")
		return sc, nil, nil
	}
	selfSigned := func() error {
		c, err := selfSignedCert(names, time.Now())
		if err != nil {
			return err
		}
		sc.set(c, "self-signed")
		log.Warn("SERVING A SELF-SIGNED CERTIFICATE on the kubelet API: an API server with --kubelet-certificate-authority " +
			"fails kubectl logs/exec/port-forward with x509 errors, and metrics-server needs --kubelet-insecure-tls; " +
			"pass --tls-cert-file/--tls-private-key-file or approve the node's kubelet-serving CSR")
		return nil
	}
	if !cfg.ServingCSR {
		return sc, nil, selfSigned()
	}
	dir := filepath.Join(cfg.Provider.Root, "pki")
	if c, err := loadIssued(dir, names, time.Now()); err != nil {
		log.Warn("ignore the serving certificate from an earlier run", "dir", dir, "err", err)
	} else if c != nil {
		sc.set(c, "csr")
		log.Info("serving the kubelet-serving certificate issued in an earlier run", "dir", dir)
		return sc, nil, nil
	}
	req, err := requestServing(ctx, client, dir, names)
	if err != nil {
		log.Warn("request a kubelet-serving certificate", "err", err)
		return sc, nil, selfSigned()
	}
	log.Warn("WAITING FOR APPROVAL of the node's serving certificate: run `kubectl certificate approve "+req.name+"`",
		"csr", req.name, "wait", cfg.CSRWait)
	wctx, cancel := context.WithTimeout(ctx, cfg.CSRWait)
	c, err := req.wait(wctx)
	cancel()
	if err == nil {
		sc.set(c, "csr")
		log.Info("serving the certificate the cluster issued", "csr", req.name)
		return sc, nil, nil
	}
	if !errors.Is(err, errCSRPending) {
		log.Error("kubelet-serving CSR failed", "csr", req.name, "err", err)
		return sc, nil, selfSigned()
	}
	if err := selfSigned(); err != nil {
		return nil, nil, err
	}
	waitMore := func(ctx context.Context) {
		c, err := req.wait(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("kubelet-serving CSR failed; keeping the self-signed certificate", "csr", req.name, "err", err)
			}
			return
		}
		sc.set(c, "csr")
		log.Info("CSR approved: now serving the certificate the cluster issued", "csr", req.name)
	}
	return sc, waitMore, nil
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

// writeFileAtomic replaces path with data (mode perm) through a rename, so
// a crash never leaves half a certificate.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
