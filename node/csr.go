package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate"
)

// newServingManager is the kubelet's serving certificate manager
// (NewKubeletServerCertificateManager): kubelet-serving CSRs for
// system:node:<name> with the node's names, renewed at 70–90 % of the
// certificate's life, the pair kept in CertDir.
func newServingManager(ctx context.Context, cfg *Config, client kubernetes.Interface, names certNames) (certificate.Manager, error) {
	if err := os.MkdirAll(cfg.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("create cert dir: %w", err)
	}
	store, err := certificate.NewFileStore(servingPairPrefix, cfg.CertDir, cfg.CertDir, "", "")
	if err != nil {
		return nil, fmt.Errorf("serving certificate store in %s: %w", cfg.CertDir, err)
	}
	m, err := certificate.NewManager(&certificate.Config{
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) { return client, nil },
		GetTemplate: func() *x509.CertificateRequest {
			return &x509.CertificateRequest{Subject: *nodeSubject(names.NodeName), DNSNames: names.dnsNames(), IPAddresses: names.IPs}
		},
		SignerName:       certificatesv1.KubeletServingSignerName,
		GetUsages:        certificate.DefaultKubeletServingGetUsages,
		CertificateStore: store,
		Name:             "kubelet-serving",
		Ctx:              &ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("serving certificate manager: %w", err)
	}
	return m, nil
}
