package localcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ApproveServingCSRs approves the node's kubelet-serving CSRs until ctx
// ends, as an admin does with `kubectl certificate approve` (kube-
// controller-manager approves node client certificates, never serving
// ones): requested by system:node:<node> for that same subject. Each
// approval is logged.
func (c *Cluster) ApproveServingCSRs(ctx context.Context, node string, log *slog.Logger) error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if err := approvePending(ctx, client, node, log); err != nil && ctx.Err() == nil {
				log.Warn("approve serving CSRs", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

func approvePending(ctx context.Context, client kubernetes.Interface, node string, log *slog.Logger) error {
	list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	user := "system:node:" + node
	for _, csr := range list.Items {
		if len(csr.Status.Conditions) > 0 || csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || csr.Spec.Username != user {
			continue
		}
		block, _ := pem.Decode(csr.Spec.Request)
		if block == nil {
			continue
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil || req.Subject.CommonName != user {
			continue
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "LocalClusterApprove", Message: "the node's own serving certificate (internal/localcluster)",
		})
		if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("approve %s: %w", csr.Name, err)
		}
		log.Info("approved the node's kubelet-serving CSR", "csr", csr.Name, "dns", req.DNSNames, "ips", req.IPAddresses)
	}
	return nil
}
