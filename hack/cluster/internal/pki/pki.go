// Package pki creates the certificates of a throwaway local cluster with
// crypto/x509 alone, so the tool needs neither openssl nor cfssl nor kubeadm.
//
// Every certificate is signed by one of two CAs: the cluster CA (serving and
// client certificates, also used by kube-controller-manager to sign CSRs) and
// the front-proxy CA (only for the aggregation layer's request-header client,
// which the apiserver must not confuse with ordinary client certificates).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// validity is long enough that a cluster left running over a holiday keeps
// working, short enough that nobody mistakes these for real certificates.
const validity = 365 * 24 * time.Hour

// backdate tolerates small clock differences between host and guests.
const backdate = time.Hour

// CertKey is a certificate with its private key.
type CertKey struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Spec describes a leaf certificate.
type Spec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool // ExtKeyUsageServerAuth
	Client       bool // ExtKeyUsageClientAuth
}

func newKey() (crypto.Signer, error) {
	// P-256 ECDSA: supported by every Kubernetes component and by Go's TLS,
	// and far faster to generate than RSA on a 2-core machine.
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA creates a self-signed certificate authority.
func NewCA(commonName string) (*CertKey, error) {
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generating key for CA %q: %w", commonName, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("generating serial for CA %q: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA %q: %w", commonName, err)
	}
	return &CertKey{Cert: cert, Key: key}, nil
}

// Issue signs a new leaf certificate described by s with the CA ca.
func (ca *CertKey) Issue(s Spec) (*CertKey, error) {
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generating key for %q: %w", s.CommonName, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("generating serial for %q: %w", s.CommonName, err)
	}
	var usages []x509.ExtKeyUsage
	if s.Server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if s.Client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	if len(usages) == 0 {
		return nil, fmt.Errorf("certificate %q: neither server nor client usage requested", s.CommonName)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		DNSNames:     s.DNSNames,
		IPAddresses:  s.IPs,
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", s.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate %q: %w", s.CommonName, err)
	}
	return &CertKey{Cert: cert, Key: key}, nil
}

// CertPEM returns the certificate in PEM form.
func (ck *CertKey) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ck.Cert.Raw})
}

// KeyPEM returns the private key in PKCS#8 PEM form.
func (ck *CertKey) KeyPEM() ([]byte, error) {
	return KeyPEM(ck.Key)
}

// KeyPEM encodes a private key as PKCS#8 PEM, which every component accepts.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Write stores the pair as dir/name.crt and dir/name.key (key mode 0600).
func (ck *CertKey) Write(dir, name string) error {
	keyPEM, err := ck.KeyPEM()
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), ck.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("writing %s certificate: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing %s key: %w", name, err)
	}
	return nil
}

// WriteServiceAccountKeys creates the key pair that signs service-account
// tokens: the private half for the apiserver (--service-account-signing-key-file)
// and kube-controller-manager, the public half for token verification.
func WriteServiceAccountKeys(dir string) error {
	key, err := newKey()
	if err != nil {
		return fmt.Errorf("generating service-account key: %w", err)
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return fmt.Errorf("encoding service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encoding service-account public key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing service-account key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pubPEM, 0o644); err != nil {
		return fmt.Errorf("writing service-account public key: %w", err)
	}
	return nil
}
