package node

import (
	"context"
	"crypto"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
)

// Files under the cert directory, named as the kubelet names them
// (pkg/kubelet/certificate/bootstrap and kubelet_certificates.go), so an
// operator who knows the kubelet finds their way.
const (
	clientPairPrefix  = "kubelet-client"
	servingPairPrefix = "kubelet-server"
	// bootstrapKeyFile keeps the key of a client CSR that is not issued
	// yet, so a restart asks again with the same key.
	bootstrapKeyFile = "kubelet-client.key.tmp"
)

// bootstrapWait bounds the wait for the node client CSR, as the kubelet's
// (an hour); the csrapproving controller usually approves in a second.
const bootstrapWait = time.Hour

// bootstrapClientCert is the kubelet's TLS bootstrap (LoadClientCert in
// k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap): unless kubeconfig
// already holds a valid client certificate, it uses the bootstrap
// kubeconfig's token to request one for system:node:<nodeName> in
// system:nodes (signer kubernetes.io/kube-apiserver-client-kubelet), keeps
// the issued pair in certDir (kubelet-client-current.pem) and writes
// kubeconfig pointing at it.
func bootstrapClientCert(ctx context.Context, kubeconfig, bootstrapPath, certDir, nodeName string, log *slog.Logger) error {
	if ok, err := clientConfigValid(kubeconfig, time.Now()); ok {
		log.Info("TLS bootstrap: the kubeconfig's client certificate is valid; not bootstrapping", "kubeconfig", kubeconfig)
		return nil
	} else if err != nil {
		log.Info("TLS bootstrap: requesting a client certificate", "reason", err.Error())
	}
	bootCfg, err := clientcmd.BuildConfigFromFlags("", bootstrapPath)
	if err != nil {
		return fmt.Errorf("load bootstrap kubeconfig %s: %w", bootstrapPath, err)
	}
	bootClient, err := kubernetes.NewForConfig(bootCfg)
	if err != nil {
		return fmt.Errorf("bootstrap client: %w", err)
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir: %w", err)
	}
	store, err := certificate.NewFileStore(clientPairPrefix, certDir, certDir, "", "")
	if err != nil {
		return fmt.Errorf("client certificate store in %s: %w", certDir, err)
	}
	// An earlier pair's key is reused (as the kubelet does), else the
	// pending request's key, else a new one.
	var keyPEM []byte
	if c, err := store.Current(); err == nil && c.PrivateKey != nil {
		keyPEM, _ = keyutil.MarshalPrivateKeyToPEM(c.PrivateKey)
	}
	tmpKey := filepath.Join(certDir, bootstrapKeyFile)
	if len(keyPEM) == 0 {
		if keyPEM, _, err = keyutil.LoadOrGenerateKeyFile(tmpKey); err != nil {
			return fmt.Errorf("bootstrap key %s: %w", tmpKey, err)
		}
	}
	certPEM, err := requestNodeClientCert(ctx, bootClient, keyPEM, nodeName, log)
	if err != nil {
		return err
	}
	if _, err := store.Update(certPEM, keyPEM); err != nil {
		return fmt.Errorf("store the node client certificate: %w", err)
	}
	if err := os.Remove(tmpKey); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("remove the bootstrap key", "path", tmpKey, "err", err)
	}
	if err := writeCertKubeconfig(bootCfg, kubeconfig, store.CurrentPath()); err != nil {
		return err
	}
	log.Info("TLS bootstrap: client certificate issued", "user", "system:node:"+nodeName,
		"cert", store.CurrentPath(), "kubeconfig", kubeconfig)
	return nil
}

// nodeSubject is the identity the Node authorizer and NodeRestriction
// recognise.
func nodeSubject(nodeName string) *pkix.Name {
	return &pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}
}

// requestNodeClientCert creates (or finds again) the node client CSR for
// keyPEM and waits for its certificate.
func requestNodeClientCert(ctx context.Context, client kubernetes.Interface, keyPEM []byte, nodeName string, log *slog.Logger) ([]byte, error) {
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse bootstrap key: %w", err)
	}
	der, err := cert.MakeCSR(key, nodeSubject(nodeName), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("make node client CSR: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("bootstrap key is a %T, not a signer", key)
	}
	usages := certificate.DefaultKubeletClientGetUsages(key)
	name, err := digestedCSRName(signer.Public(), nodeSubject(nodeName), usages)
	if err != nil {
		return nil, err
	}
	reqName, uid, err := csr.RequestCertificateWithContext(ctx, client, der, name, certificatesv1.KubeAPIServerClientKubeletSignerName, nil, usages, key)
	if err != nil {
		return nil, fmt.Errorf("create node client CSR %s: %w", name, err)
	}
	log.Info("TLS bootstrap: waiting for the node client CSR to be approved and issued", "csr", reqName)
	wctx, cancel := context.WithTimeout(ctx, bootstrapWait)
	defer cancel()
	certPEM, err := csr.WaitForCertificate(wctx, client, reqName, uid)
	if err != nil {
		if wait.Interrupted(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("node client CSR %s not issued within %s: is csrapproving running and the bootstrap token bound to system:certificates.k8s.io:certificatesigningrequests:nodeclient? (`kubectl certificate approve %s`)", reqName, bootstrapWait, reqName)
		}
		return nil, fmt.Errorf("node client CSR %s: %w", reqName, err)
	}
	return certPEM, nil
}

// digestedCSRName names a CSR after its key, subject and usages, as the
// kubelet does, so a restart finds its pending request instead of adding
// another.
func digestedCSRName(pub crypto.PublicKey, subject *pkix.Name, usages []certificatesv1.KeyUsage) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	h := sha512.New512_256()
	for _, part := range [][]byte{der, []byte(subject.CommonName), []byte(strings.Join(subject.Organization, ","))} {
		h.Write(part)
		h.Write([]byte{0})
	}
	for _, u := range usages {
		h.Write([]byte(u))
		h.Write([]byte{0})
	}
	return "node-csr-" + strings.TrimRight(base32.StdEncoding.EncodeToString(h.Sum(nil)), "="), nil
}

// clientConfigValid reports whether kubeconfig exists and its client
// certificates are valid now; the error says why not.
func clientConfigValid(kubeconfig string, now time.Time) (bool, error) {
	if _, err := os.Stat(kubeconfig); err != nil {
		return false, fmt.Errorf("no kubeconfig at %s", kubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return false, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	data := cfg.CertData
	if len(data) == 0 && cfg.CertFile != "" {
		if data, err = os.ReadFile(cfg.CertFile); err != nil {
			return false, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	}
	if len(data) == 0 {
		return false, fmt.Errorf("kubeconfig %s has no client certificate", kubeconfig)
	}
	certs, err := cert.ParseCertsPEM(data)
	if err != nil {
		return false, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	for _, c := range certs {
		if now.After(c.NotAfter) || now.Before(c.NotBefore) {
			return false, fmt.Errorf("kubeconfig %s: client certificate valid %s to %s", kubeconfig, c.NotBefore, c.NotAfter)
		}
	}
	return true, nil
}

// writeCertKubeconfig writes a kubeconfig for the bootstrap kubeconfig's
// cluster that authenticates with the pair in pemPath (cert and key in one
// file, which the certificate store updates through a symlink).
func writeCertKubeconfig(boot *rest.Config, path, pemPath string) error {
	ca := boot.CAData
	if len(ca) == 0 && boot.CAFile != "" {
		b, err := os.ReadFile(boot.CAFile)
		if err != nil {
			return fmt.Errorf("read bootstrap CA: %w", err)
		}
		ca = b
	}
	kc := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"default-cluster": {
			Server: boot.Host, CertificateAuthorityData: ca, InsecureSkipTLSVerify: boot.Insecure, TLSServerName: boot.ServerName,
		}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{"default-auth": {ClientCertificate: pemPath, ClientKey: pemPath}},
		Contexts: map[string]*clientcmdapi.Context{"default-context": {
			Cluster: "default-cluster", AuthInfo: "default-auth", Namespace: "default",
		}},
		CurrentContext: "default-context",
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if err := clientcmd.WriteToFile(kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
