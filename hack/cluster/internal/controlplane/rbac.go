package controlplane

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

const crbPath = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"

// BootstrapGroup is the group kubeadm's node bootstrap tokens carry
// (auth-extra-groups); the bindings below are granted to it.
const BootstrapGroup = "system:bootstrappers:kubeadm:default-node-token"

func binding(name, role, kind, subject string) string {
	return fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
"metadata":{"name":%q},
"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":%q},
"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":%q,"name":%q}]}`, name, role, kind, subject)
}

// applyRBAC creates the bindings upstream's bootstrap policy does not have:
// the apiserver's access to the kubelet API, and kubeadm's TLS
// bootstrapping bindings (kubeadm init phase bootstrap-token), and
// kube-proxy's role for the nodes (deploy/rbac/node-proxier.yaml: a
// vk-applevm node does kube-proxy's work for its pods). Otherwise the Node
// authorizer and NodeRestriction govern the node, as a kubelet.
func applyRBAC(ctx context.Context, a *api, _ *pki.Files) error {
	for _, b := range []struct{ name, role, kind, subject string }{
		// kube-apiserver → kubelet: the node's webhook authorizer asks the
		// apiserver (SubjectAccessReview) whether this user may use
		// nodes/proxy, nodes/log, ...; system:kubelet-api-admin is the role
		// kubeadm binds.
		{"vk-applevm:apiserver-kubelet-client", "system:kubelet-api-admin", "User", pki.KubeletClientUser},
		// A bootstrap token may create a node client CSR ...
		{"kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "Group", BootstrapGroup},
		// ... which csrapproving approves for it ...
		{"kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group", BootstrapGroup},
		// ... and a node renews its own client certificate.
		{"kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"},
		// The node watches Services and EndpointSlices for its pods'
		// cluster DNS and Service addresses, as kube-proxy does.
		{"vk-applevm:node-proxier", "system:node-proxier", "Group", "system:nodes"},
	} {
		if err := a.ensure(ctx, crbPath, binding(b.name, b.role, b.kind, b.subject)); err != nil {
			return fmt.Errorf("creating cluster role binding %s: %w", b.name, err)
		}
	}
	return nil
}
