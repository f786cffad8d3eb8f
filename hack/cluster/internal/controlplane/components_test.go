package controlplane

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

func testConfig(t *testing.T) Config {
	return Config{
		Dir: t.TempDir(), BinDir: "/opt/bin", NodeName: "mac-1", Timeout: time.Minute,
		NetNS: netns.Config{Name: "vk", HostIP: net.ParseIP("10.201.0.1"), IP: net.ParseIP("10.201.0.2"), PrefixLen: 24},
	}
}

func TestAPIServerFlags(t *testing.T) {
	c := testConfig(t)
	p := newPaths(c, &pki.Files{CA: "/p/ca", APIServer: "/p/apiserver"})
	args := apiserver(p).args
	for _, want := range []string{
		"--advertise-address=10.201.0.2",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-certificate-authority=/p/ca.crt",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--client-ca-file=/p/ca.crt",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("kube-apiserver lacks %s", want)
		}
	}
	if p.apiServer != "https://10.201.0.2:6443" {
		t.Errorf("apiServer = %s", p.apiServer)
	}
	if !slices.Contains(controllerManager(p).args, "--cluster-signing-cert-file=/p/ca.crt") {
		t.Error("kube-controller-manager cannot sign CSRs")
	}
}

func TestValidateNodeName(t *testing.T) {
	c := testConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.NodeName = "Mac_1"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("bad node name accepted: %v", err)
	}
}

func TestCleanStaleKeepsUserFiles(t *testing.T) {
	c := testConfig(t)
	c.NetNS.Name = "vk-unit-test-does-not-exist"
	for _, f := range []string{"notes.txt", "admin.kubeconfig", "etcd.pid", "pki/ca.crt"} {
		p := filepath.Join(c.Dir, f)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := cleanStale(c, nil); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(c.Dir, "*"))
	if len(left) != 1 || filepath.Base(left[0]) != "notes.txt" {
		t.Errorf("after cleanStale: %v, want only notes.txt", left)
	}
}
