package controlplane

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

// bootstrapTokenTTL is kubeadm's default token lifetime; tokencleaner
// deletes the token after it.
const bootstrapTokenTTL = 24 * time.Hour

// bootstrapToken creates a bootstrap token as `kubeadm token create` does
// (a bootstrap.kubernetes.io/token Secret in kube-system) and writes the
// bootstrap kubeconfig that carries it.
func bootstrapToken(ctx context.Context, a *api, p paths, f *pki.Files, now time.Time) error {
	id, secret := randomToken(6), randomToken(16)
	obj := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret",
"metadata":{"name":"bootstrap-token-%s","namespace":"kube-system"},
"type":"bootstrap.kubernetes.io/token",
"stringData":{"token-id":%q,"token-secret":%q,"expiration":%q,
"usage-bootstrap-authentication":"true","usage-bootstrap-signing":"true",
"auth-extra-groups":%q,"description":"vk-applevm node bootstrap token (cluster up)"}}`,
		id, id, secret, now.Add(bootstrapTokenTTL).UTC().Format(time.RFC3339), BootstrapGroup)
	if err := a.ensure(ctx, "/api/v1/namespaces/kube-system/secrets", obj); err != nil {
		return fmt.Errorf("creating the bootstrap token: %w", err)
	}
	return pki.WriteTokenKubeconfig(p.bootstrap, p.apiServer, "kubelet-bootstrap", f.CA, id+"."+secret)
}

// randomToken is n characters of [a-z0-9], the bootstrap token alphabet,
// drawn without modulo bias.
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, n)
	var b [1]byte
	for len(out) < n {
		if _, err := rand.Read(b[:]); err != nil {
			// crypto/rand does not fail on Linux; a token must never be weak.
			fmt.Fprintln(os.Stderr, "cluster: crypto/rand:", err)
			os.Exit(1)
		}
		if int(b[0]) < 256/len(alphabet)*len(alphabet) {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out)
}
