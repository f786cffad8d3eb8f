// Package test holds the control-plane integration test. It is a package of
// its own so `go test ./internal/...` stays fast; cluster.mk runs it with
// -run TestUpDown. It needs root, iproute2, kubectl and Go, and builds the
// control plane the first time (about 8 minutes on 2 cores, cached after).
// It also proves metrics-server's paths: the aggregation layer (APIService
// Available, metrics.k8s.io through the apiserver) and the scrape of a node's
// :10250 (a stand-in kubelet with the node's certificates).
package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/controlplane"
)

// A subnet of its own, so the test can run next to a `make run` cluster
// (which uses 10.201.0.0/24).
const (
	hostIP   = "10.203.0.1"
	nsIP     = "10.203.0.2"
	nodeName = "it-node"
)

func prerequisites(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("TestUpDown needs root (network namespaces, veth): run it as root, e.g. `sudo -E make test-controlplane`")
	}
	for tool, how := range map[string]string{
		"ip":      "install iproute2 (apt-get install iproute2)",
		"kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/, or apt-get install kubectl from the Kubernetes apt repository)",
		"go":      "install Go 1.26+ (https://go.dev/dl); the control plane is built from source",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found in PATH: %s", tool, how)
		}
	}
}

// run runs a command, failing the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := output(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func output(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// streamed runs the tool with its progress (stderr) in the test log and
// returns stdout.
func streamed(t *testing.T, tool string, args ...string) string {
	t.Helper()
	var stdout bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, testWriter{t}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("cluster %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("cluster %s took %v", args[0], time.Since(start).Round(100*time.Millisecond))
	return stdout.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func eventually(t *testing.T, what string, d time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ok, s := f()
		if ok {
			return
		}
		last = s
		time.Sleep(time.Second)
	}
	t.Fatalf("timed out after %v waiting for %s; last: %s", d, what, last)
}

func TestUpDown(t *testing.T) {
	prerequisites(t)
	tmp := t.TempDir()
	tool := filepath.Join(tmp, "cluster")
	run(t, "go", "build", "-o", tool, "github.com/vk-applevm/vk-applevm/hack/cluster")

	// Cached after the first time; the default cache dir is shared with make.
	streamed(t, tool, "build")

	dir := filepath.Join(tmp, "c")
	ns := fmt.Sprintf("vk-it-%d", os.Getpid())
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			if out, err := output(tool, "down", "--dir", dir); err != nil {
				t.Logf("cleanup down: %v\n%s", err, out)
			}
		}
	})
	// 10s: metrics-server's minimum, so the scrape check below is quick.
	out := streamed(t, tool, "up", "--dir", dir, "--netns", ns,
		"--host-ip", hostIP, "--ip", nsIP, "--node-name", nodeName, "--metric-resolution", "10s")
	var s controlplane.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("up printed no JSON summary: %v\n%s", err, out)
	}
	if !s.Ready || s.NetNS != ns || s.IP != nsIP || s.APIServer != "https://"+nsIP+":6443" || s.Node.Name != nodeName {
		t.Fatalf("unexpected summary: %+v", s)
	}
	if s.MetricsServer == nil || !s.MetricsServer.Available || s.Components["metrics-server"].Pid == 0 {
		t.Fatalf("metrics-server not reported available and running: %+v %+v", s.MetricsServer, s.Components)
	}
	for _, f := range []string{s.AdminKubeconfig, s.Node.Kubeconfig, s.Node.ServingCert, s.Node.ServingKey, s.Node.ClientCA, s.Node.BootstrapKubeconfig} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("summary names a missing file: %v", err)
		}
	}

	// From the host, through the veth.
	admin := "--kubeconfig=" + s.AdminKubeconfig
	if got := run(t, "kubectl", admin, "get", "--raw", "/readyz"); strings.TrimSpace(got) != "ok" {
		t.Fatalf("/readyz = %q", got)
	}
	// The node identity authenticates as the Node authorizer expects.
	who := run(t, "kubectl", "--kubeconfig="+s.Node.Kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if who != "system:node:"+nodeName {
		t.Errorf("node kubeconfig authenticates as %q", who)
	}
	// The bootstrap token is kubeadm's: a bootstrapper that may ask for a
	// node client certificate, and nothing else.
	boot := "--kubeconfig=" + s.Node.BootstrapKubeconfig
	groups := run(t, "kubectl", boot, "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}")
	if !strings.Contains(groups, "system:bootstrappers:kubeadm:default-node-token") {
		t.Errorf("bootstrap kubeconfig's groups: %s", groups)
	}
	if got := strings.TrimSpace(run(t, "kubectl", boot, "auth", "can-i", "create", "certificatesigningrequests")); got != "yes" {
		t.Errorf("bootstrap token may not create CSRs: %q", got)
	}
	if got, _ := output("kubectl", boot, "auth", "can-i", "list", "pods"); strings.TrimSpace(got) != "no" {
		t.Errorf("bootstrap token may list pods: %q", got)
	}

	// Deployment → ReplicaSet → Pod, and the scheduler finds no node for it.
	run(t, "kubectl", admin, "create", "deployment", "web", "--image=registry.invalid/web:1")
	start := time.Now()
	eventually(t, "a Pending, unschedulable pod", 90*time.Second, func() (bool, string) {
		out, err := output("kubectl", admin, "get", "pods", "-l", "app=web", "-o",
			`jsonpath={range .items[*]}{.status.phase} {.status.conditions[?(@.type=="PodScheduled")].reason}{"\n"}{end}`)
		return err == nil && strings.TrimSpace(out) == "Pending Unschedulable", out
	})
	t.Logf("Deployment → Pod Pending (Unschedulable: no nodes) after %v", time.Since(start).Round(100*time.Millisecond))

	// After the scheduling check: from here on there is a (cordoned) node.
	checkMetricsAPI(t, admin)
	checkNodeScraped(t, admin, &s)

	// exec runs inside the namespace.
	if got := run(t, tool, "exec", "--dir", dir, "--", "ip", "-o", "-4", "addr", "show"); !strings.Contains(got, nsIP+"/24") {
		t.Errorf("cluster exec does not run in the namespace; ip addr:\n%s", got)
	}
	var st controlplane.Summary
	if err := json.Unmarshal([]byte(run(t, tool, "status", "--dir", dir)), &st); err != nil || !st.Ready {
		t.Errorf("status: ready=%v err=%v", st.Ready, err)
	}
	if st.MetricsServer == nil || !st.MetricsServer.Available || !st.Components["metrics-server"].Running {
		t.Errorf("status does not report metrics-server available and running: %+v", st.MetricsServer)
	}

	streamed(t, tool, "down", "--dir", dir)
	downDone = true
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		t.Errorf("netns %s still exists after down", ns)
	}
	if out, err := output("ip", "-o", "link", "show", s.HostVeth); err == nil {
		t.Errorf("veth %s still exists after down: %s", s.HostVeth, out)
	}
	for name, c := range s.Components {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.Pid)); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid)); !strings.Contains(string(b), ") Z") {
				t.Errorf("%s (pid %d) still runs after down", name, c.Pid)
			}
		}
	}
	if out, err := output(tool, "status", "--dir", dir); err == nil {
		t.Errorf("status succeeds after down:\n%s", out)
	}

	checkWithoutMetricsServer(t, tool, filepath.Join(tmp, "no-metrics"))
}
