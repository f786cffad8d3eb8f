package controlplane

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

const crbPath = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"

func bindUser(name, role, user string) string {
	return fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
"metadata":{"name":%q},
"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":%q},
"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":%q}]}`, name, role, user)
}

// nodeReadRole lets the node list and watch what virtual-kubelet's informers
// want cluster-wide. The Node authorizer only grants a kubelet the secrets and
// configmaps of pods bound to it, fetched one by one, so informers over all
// secrets/configmaps/services never sync and the node hangs at start.
const nodeReadRole = `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
"metadata":{"name":"vk-applevm:node-read"},
"rules":[{"apiGroups":[""],"resources":["secrets","configmaps","services"],"verbs":["get","list","watch"]}]}`

// applyRBAC creates the bindings upstream's bootstrap policy does not have.
func applyRBAC(ctx context.Context, a *api, f *pki.Files, nodeRead bool) error {
	// kube-apiserver → kubelet: the node's webhook authorizer asks the
	// apiserver (SubjectAccessReview) whether this user may use nodes/proxy,
	// nodes/log, ...; system:kubelet-api-admin is the role kubeadm binds.
	if err := a.ensure(ctx, crbPath, bindUser("vk-applevm:apiserver-kubelet-client",
		"system:kubelet-api-admin", pki.KubeletClientUser)); err != nil {
		return fmt.Errorf("granting the apiserver access to the kubelet API: %w", err)
	}
	if !nodeRead {
		return nil
	}
	if err := a.ensure(ctx, "/apis/rbac.authorization.k8s.io/v1/clusterroles", nodeReadRole); err != nil {
		return fmt.Errorf("creating the node read role: %w", err)
	}
	if err := a.ensure(ctx, crbPath, bindUser("vk-applevm:node-read", "vk-applevm:node-read", f.NodeUser)); err != nil {
		return fmt.Errorf("binding the node read role: %w", err)
	}
	return nil
}
