package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/cert"
)

// rootCAConfigMap is published in every namespace by kube-controller-manager's
// root-ca-cert-publisher; kube-public is readable by any authenticated
// user in kubeadm clusters, kube-system is the fallback.
const rootCAConfigMap = "kube-root-ca.crt"

// pinnedClientCA is where the node keeps the client CA it found at its
// first start, in its certificate directory.
const pinnedClientCA = "client-ca.crt"

// clientCA is loadClientCA with pinning: without a file, the CA found at
// the node's first start is written to pin and used from then on. The root
// CA ConfigMap can be rewritten by whoever may edit ConfigMaps in
// kube-public or kube-system; a node that re-read it at every start would
// let them mint credentials for every pod's exec. A CA that later differs
// is reported, never taken: rotating it is the operator's step (delete the
// pinned file or pass --client-ca-file).
func clientCA(ctx context.Context, client kubernetes.Interface, file string, kubeconfigCA []byte, pin string, log *slog.Logger) ([]byte, string, error) {
	if file != "" || pin == "" {
		return loadClientCA(ctx, client, file, kubeconfigCA)
	}
	pinned, err := os.ReadFile(pin)
	switch {
	case err == nil:
		if _, err := cert.ParseCertsPEM(pinned); err != nil {
			return nil, "", fmt.Errorf("pinned client CA %s: %w (delete it to take the cluster's again)", pin, err)
		}
		if found, src, err := loadClientCA(ctx, client, "", kubeconfigCA); err == nil && !bytes.Equal(bytes.TrimSpace(found), bytes.TrimSpace(pinned)) {
			log.Warn("the cluster's client CA differs from the one pinned at the node's first start; keeping the pinned one (delete it or pass --client-ca-file to change)",
				"pinned", pin, "found", src)
		}
		return pinned, pin + " (pinned at first start)", nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("read pinned client CA: %w", err)
	}
	found, src, err := loadClientCA(ctx, client, "", kubeconfigCA)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return nil, "", fmt.Errorf("pin the client CA: %w", err)
	}
	if err := renameio.WriteFile(pin, found, 0o600, renameio.WithTempDir(filepath.Dir(pin))); err != nil {
		return nil, "", fmt.Errorf("pin the client CA: %w", err)
	}
	return found, src + ", pinned in " + pin, nil
}

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
