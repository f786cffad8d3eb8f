package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestNodeJoinedByBootstrap: the node joined from deploy/kina/join.sh's
// bootstrap kubeconfig alone, as a kubelet joins a kubeadm cluster, and
// everything it does is what the Node authorizer allows a node: no RBAC
// names it.
func TestNodeJoinedByBootstrap(t *testing.T) {
	ne := clusterNode(t)
	ctx := context.Background()

	// The node's own kubeconfig, written by TLS bootstrapping, is a node
	// identity; join.sh found the node's address on the interface that
	// reaches the API server.
	kc := "--kubeconfig=" + filepath.Join(ne.root, "kubelet.kubeconfig")
	var who struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(ne.kubectl(t, kc, "auth", "whoami", "-o", "json")), &who); err != nil {
		t.Fatal(err)
	}
	if who.Status.UserInfo.Username != "system:node:"+ne.name || !slices.Contains(who.Status.UserInfo.Groups, "system:nodes") {
		t.Fatalf("the node authenticates as %+v", who.Status.UserInfo)
	}
	cfg, err := os.ReadFile(filepath.Join(ne.configDir, "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "nodeIP: "+ne.c.Node.IP+"\n") {
		t.Fatalf("join.sh picked another node IP than the API server's side (%s):\n%s", ne.c.Node.IP, cfg)
	}

	// Its first client certificate came from a CSR of the bootstrap token,
	// approved by the cluster (csrapproving), not by anyone's hand.
	var csrs certificatesv1.CertificateSigningRequestList
	if err := json.Unmarshal([]byte(ne.kubectl(t, "get", "csr", "-o", "json")), &csrs); err != nil {
		t.Fatal(err)
	}
	bootstrapped := false
	for _, c := range csrs.Items {
		if c.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName && strings.HasPrefix(c.Spec.Username, "system:bootstrap:") &&
			approvedBy(c, "AutoApproved") {
			bootstrapped = true
		}
	}
	if !bootstrapped {
		t.Fatalf("no auto-approved node client CSR from a bootstrap token among %d CSRs", len(csrs.Items))
	}

	// No RBAC binding names the node, or the nodes' group beyond kubeadm's
	// renewal approval and kube-proxy's read-only role, which the node
	// plays for its pods (deploy/rbac/node-proxier.yaml).
	for _, kind := range []string{"clusterrolebindings", "rolebindings"} {
		var list struct {
			Items []rbacv1.RoleBinding `json:"items"`
		}
		if err := json.Unmarshal([]byte(ne.kubectl(t, "get", kind, "-A", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		for _, b := range list.Items {
			for _, s := range b.Subjects {
				allowed := b.Name == "kubeadm:node-autoapprove-certificate-rotation" ||
					b.Name == "vk-applevm:node-proxier" && b.RoleRef.Name == "system:node-proxier"
				if s.Name == "system:node:"+ne.name || s.Name == "system:nodes" && !allowed {
					t.Errorf("%s %s/%s grants %s %s the role %s", kind, b.Namespace, b.Name, s.Kind, s.Name, b.RoleRef.Name)
				}
			}
		}
	}
	// The Node authorizer is what limits it: no cluster-wide reads.
	for _, args := range [][]string{{"list", "secrets", "-A"}, {"get", "configmaps", "-n", "kube-system"}, {"list", "pods", "-A"}} {
		// "no", with the Node authorizer's reason after it.
		out, _ := ne.c.Kubectl(ctx, "", append([]string{kc, "auth", "can-i"}, args...)...)
		if answer, _, _ := strings.Cut(strings.TrimSpace(out), " "); answer != "no" {
			t.Errorf("the node may %v: %q", args, out)
		}
	}

	// And it runs a pod that needs what a node may read only for its own
	// pods: a secret in env, a configMap volume, a pull secret, the
	// service account's token (TokenRequest).
	name := uniqueName("joined")
	ne.apply(t, named(`
apiVersion: v1
kind: Secret
metadata: {name: NAME-secret}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Secret
metadata: {name: NAME-pull}
type: kubernetes.io/dockerconfigjson
stringData: {.dockerconfigjson: '{"auths":{"registry.invalid":{"auth":"dTpw"}}}'}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: NAME-config}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  imagePullSecrets: [{name: NAME-pull}]`+tolerate+`
  containers:
  - name: app
    image: BUSYBOX
    imagePullPolicy: Always
    command: ["sh", "-c", "echo secret=$TOKEN; echo config=$(cat /cfg/greeting); echo sa-token-bytes=$(wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token)"]
    env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: NAME-secret, key: token}}}]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes: [{name: cfg, configMap: {name: NAME-config}}]
`, name))
	ne.waitPod(t, name, "Succeeded", 3*time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	logs := ne.kubectl(t, "logs", name)
	if !strings.Contains(logs, "secret=s3cret\n") || !strings.Contains(logs, "config=hello\n") || strings.Contains(logs, "sa-token-bytes=0") ||
		!strings.Contains(logs, "sa-token-bytes=") {
		t.Fatalf("logs: %q", logs)
	}
	// The recorder sends events in order: once Pulled is there, so is any
	// refusal recorded before it.
	events := ne.waitEvents(t, name, "", `{range .items[*]}{.reason}: {.message}{"\n"}{end}`,
		func(s string) bool { return strings.Contains(s, "Pulled: ") })
	if strings.Contains(events, "FailedToRetrieveImagePullSecret") || strings.Contains(events, "forbidden") {
		t.Fatalf("the node could not read what its pod refers to:\n%s", events)
	}
	// The kubelet's pull events: Pulling, then Pulled with durations and size.
	if !strings.Contains(events, "Pulling: Pulling image \""+ne.busybox+"\"") ||
		!regexpMatch(`Pulled: Successfully pulled image "`+ne.busybox+`" in [0-9.]+m?s \([0-9.]+m?s including waiting\)\. Image size: [1-9][0-9]* bytes\.`, events) {
		t.Fatalf("pull events are not the kubelet's:\n%s", events)
	}
}

func approvedBy(c certificatesv1.CertificateSigningRequest, reason string) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved && cond.Reason == reason {
			return true
		}
	}
	return false
}

// TestNodeCertificatesRenewed: the cluster's signer issues short-lived
// certificates (certLifetime); the node renews its client certificate
// (approved by the cluster as a node renewing itself) and its serving
// certificate (approved by the stand-in admin) before they expire, while
// a pod keeps running and the kubelet API keeps serving.
func TestNodeCertificatesRenewed(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("renew")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  containers:
  - name: app
    image: BUSYBOX
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
`, name))
	pod := ne.waitPod(t, name, "Running", 3*time.Minute, podRunning)
	clientPath := filepath.Join(ne.root, "pki", "kubelet-client-current.pem")
	client0, err := pemSerial(clientPath)
	if err != nil {
		t.Fatal(err)
	}
	serving0, err := servingSerial(ne.c.Node.IP)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client certificate %x, serving certificate %x", client0, serving0)
	// Each must be replaced before it expires: within one lifetime plus
	// the approval's round trip.
	deadline := time.Now().Add(certLifetime + time.Minute)
	var client1, serving1 *big.Int
	for {
		client1, _ = pemSerial(clientPath)
		serving1, _ = servingSerial(ne.c.Node.IP)
		if client1 != nil && serving1 != nil && client1.Cmp(client0) != 0 && serving1.Cmp(serving0) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed within %s: client %x → %x, serving %x → %x\nnode log:\n%s",
				certLifetime+time.Minute, client0, client1, serving0, serving1, ne.node.Tail(30))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("renewed: client certificate %x, serving certificate %x", client1, serving1)

	// The pod kept running, untouched; the kubelet API serves logs and
	// exec through the renewed serving certificate (the API server checks
	// it against the cluster CA); the node kept its lease with the renewed
	// client certificate.
	after := ne.pod(t, name)
	if after.UID != pod.UID || after.Status.Phase != corev1.PodRunning || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("the pod did not keep running: %+v", after.Status)
	}
	before := lastTick(t, ne.kubectl(t, "logs", name))
	if out := ne.kubectl(t, "exec", name, "--", "echo", "exec-ok"); out != "exec-ok\n" {
		t.Fatalf("exec after the renewal: %q", out)
	}
	ne.waitLogs(t, name, fmt.Sprintf("tick %d\n", before+2))
	if ok, err := ne.c.NodeReady(context.Background(), ne.name); !ok {
		t.Fatalf("node not Ready after the renewal: %v", err)
	}
	// The client renewal was the node's own request, approved by the cluster.
	var csrs certificatesv1.CertificateSigningRequestList
	if err := json.Unmarshal([]byte(ne.kubectl(t, "get", "csr", "-o", "json")), &csrs); err != nil {
		t.Fatal(err)
	}
	renewedByNode := false
	for _, c := range csrs.Items {
		if c.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName && c.Spec.Username == "system:node:"+ne.name && approvedBy(c, "AutoApproved") {
			renewedByNode = true
		}
	}
	if !renewedByNode {
		t.Fatal("no node client CSR from the node itself, auto-approved")
	}
}

// pemSerial is the serial number of the first certificate in a PEM file.
func pemSerial(path string) (*big.Int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("no certificate in %s", path)
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			return c.SerialNumber, nil
		}
	}
}

// servingSerial is the serial of the certificate :10250 serves.
func servingSerial(ip string) (*big.Int, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	// Only the certificate's identity is read here; the API server is the
	// one that verifies it (kubectl exec above).
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(ip, "10250"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
