package node

import (
	"context"
	"errors"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/cert"
)

// rootCAConfigMap is published in every namespace by kube-controller-manager's
// root-ca-cert-publisher; kube-public is readable by any authenticated
// user in kubeadm clusters, kube-system is the fallback.
const rootCAConfigMap = "kube-root-ca.crt"

// loadClientCA returns the PEM bundle that signs clients of the kubelet API
// (above all the API server's kubelet client certificate) and where it
// came from: the file given, else the CA the node's kubeconfig trusts (in
// kubeadm-style clusters one CA signs both), else the cluster's root CA
// ConfigMap.
func loadClientCA(ctx context.Context, client kubernetes.Interface, file string, kubeconfigCA []byte) ([]byte, string, error) {
	if file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("read client CA: %w", err)
		}
		if _, err := cert.ParseCertsPEM(pem); err != nil {
			return nil, "", fmt.Errorf("client CA %s: %w", file, err)
		}
		return pem, file, nil
	}
	if len(kubeconfigCA) > 0 {
		if _, err := cert.ParseCertsPEM(kubeconfigCA); err == nil {
			return kubeconfigCA, "the kubeconfig's certificate authority", nil
		}
	}
	if client == nil {
		return nil, "", errors.New("no client CA file and no API client to read the cluster's")
	}
	var errs []error
	for _, ns := range []string{metav1.NamespacePublic, metav1.NamespaceSystem} {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, rootCAConfigMap, metav1.GetOptions{})
		if err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
				return nil, "", fmt.Errorf("read configmap %s/%s: %w", ns, rootCAConfigMap, err)
			}
			errs = append(errs, err)
			continue
		}
		pem := []byte(cm.Data["ca.crt"])
		if _, err := cert.ParseCertsPEM(pem); err != nil {
			errs = append(errs, fmt.Errorf("configmap %s/%s ca.crt: %w", ns, rootCAConfigMap, err))
			continue
		}
		return pem, "configmap " + ns + "/" + rootCAConfigMap, nil
	}
	return nil, "", fmt.Errorf("find the cluster CA (pass --client-ca-file): %w", errors.Join(errs...))
}
