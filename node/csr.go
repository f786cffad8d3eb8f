package node

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
)

// Files under <root>/pki: the key is made once and kept, so a CSR pending
// across a restart is found again (same key, same name) and an issued
// certificate is reused.
const (
	servingKeyFile  = "kubelet-serving.key"
	servingCertFile = "kubelet-serving.crt"
)

// errCSRPending: the CSR was neither approved nor denied in time.
var errCSRPending = errors.New("certificate signing request not approved yet")

// servingCSR is a kubelet-serving CSR the node created (or found).
type servingCSR struct {
	client kubernetes.Interface
	dir    string
	name   string
	uid    types.UID
	keyPEM []byte
}

// loadIssued returns the certificate issued in an earlier run if it is
// valid for another hour and covers names; nil if there is none.
func loadIssued(dir string, names certNames, now time.Time) (*tls.Certificate, error) {
	certPath := filepath.Join(dir, servingCertFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(certPath, filepath.Join(dir, servingKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", certPath, err)
	}
	leaf := c.Leaf
	switch {
	case now.Add(time.Hour).After(leaf.NotAfter):
		return nil, fmt.Errorf("%s expires at %s", certPath, leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("%s is not valid before %s", certPath, leaf.NotBefore)
	case !names.covers(leaf):
		return nil, fmt.Errorf("%s does not cover the node's current names %v %v", certPath, names.dnsNames(), names.IPs)
	}
	return &c, nil
}

// requestServing creates the node's kubelet-serving CSR (signer
// kubernetes.io/kubelet-serving: subject system:node:<name> in
// system:nodes, DNS and IP SANs only), or finds the one an earlier run
// created with the same key and names.
func requestServing(ctx context.Context, client kubernetes.Interface, dir string, names certNames) (*servingCSR, error) {
	if client == nil {
		return nil, errors.New("no API client")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	keyPath := filepath.Join(dir, servingKeyFile)
	keyPEM, _, err := keyutil.LoadOrGenerateKeyFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("serving key %s: %w", keyPath, err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse serving key %s: %w", keyPath, err)
	}
	subject := &pkix.Name{CommonName: "system:node:" + names.NodeName, Organization: []string{"system:nodes"}}
	der, err := cert.MakeCSR(key, subject, names.dnsNames(), names.IPs)
	if err != nil {
		return nil, fmt.Errorf("make serving CSR: %w", err)
	}
	name, err := csrName(names, key)
	if err != nil {
		return nil, err
	}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	reqName, uid, err := csr.RequestCertificateWithContext(ctx, client, der, name, certificatesv1.KubeletServingSignerName, nil, usages, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR %s: %w", name, err)
	}
	return &servingCSR{client: client, dir: dir, name: reqName, uid: uid, keyPEM: keyPEM}, nil
}

// csrName is stable for one key and one set of names, so a restart finds
// the pending CSR instead of adding another.
func csrName(names certNames, key any) (string, error) {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return "", fmt.Errorf("serving key is a %T, not a signer", key)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return "", fmt.Errorf("marshal serving public key: %w", err)
	}
	h := sha256.New()
	h.Write(pub)
	fmt.Fprint(h, names.dnsNames(), names.IPs)
	node := names.NodeName
	if len(node) > 200 {
		node = node[:200]
	}
	return "vk-applevm-serving-" + node + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// wait blocks until the CSR is issued (errCSRPending when ctx ends first)
// and stores the certificate next to its key.
func (r *servingCSR) wait(ctx context.Context) (*tls.Certificate, error) {
	certPEM, err := csr.WaitForCertificate(ctx, r.client, r.name, r.uid)
	if wait.Interrupted(err) || (err != nil && ctx.Err() != nil) {
		return nil, fmt.Errorf("CSR %s: %w", r.name, errCSRPending)
	}
	if err != nil {
		return nil, fmt.Errorf("CSR %s: %w", r.name, err)
	}
	c, err := tls.X509KeyPair(certPEM, r.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CSR %s issued a certificate that does not match the key: %w", r.name, err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, servingCertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("store issued serving certificate: %w", err)
	}
	return &c, nil
}
