package test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/controlplane"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

// What the stand-in kubelet reports: a node using a quarter of a core and
// 256 MiB, which metrics-server must turn into 250m and 256Mi.
const (
	fakeCPUCores = 0.25
	fakeMemory   = 256 << 20
)

// fakeKubelet serves /metrics/resource on the node's address and port inside
// the cluster's namespace, with the serving cert `up` issued for the node and
// client certificates verified against the cluster CA — what the real node
// does — and records who scraped it.
type fakeKubelet struct {
	srv   *http.Server
	start time.Time

	mu       sync.Mutex
	scrapers map[string]int // client CN → requests to /metrics/resource
}

func startFakeKubelet(t *testing.T, s *controlplane.Summary) *fakeKubelet {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(s.Node.ServingCert, s.Node.ServingKey)
	if err != nil {
		t.Fatalf("node serving pair from the summary: %v", err)
	}
	caPEM, err := os.ReadFile(s.Node.ClientCA)
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", s.Node.ClientCA)
	}
	// The socket is created inside the namespace and stays there; serving it
	// from any thread is fine.
	var ln net.Listener
	err = netns.Do(s.NetNS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(s.Node.IP, "10250"))
		return err
	})
	if err != nil {
		t.Fatalf("listening on the node address in netns %s: %v", s.NetNS, err)
	}
	k := &fakeKubelet{start: time.Now(), scrapers: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics/resource", k.metrics)
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	tlsLn := tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: cas,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})
	go func() { _ = k.srv.Serve(tlsLn) }()
	// Closed before `down`: an open socket would keep the deleted namespace alive.
	t.Cleanup(func() { k.srv.Close() })
	return k
}

func (k *fakeKubelet) metrics(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.scrapers[r.TLS.PeerCertificates[0].Subject.CommonName]++
	k.mu.Unlock()
	now := time.Now()
	// A counter that grows by exactly fakeCPUCores per second since start.
	cpu := 1 + fakeCPUCores*now.Sub(k.start).Seconds()
	ms := now.UnixMilli()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total %g %d\n", cpu, ms)
	fmt.Fprintf(w, "# TYPE node_memory_working_set_bytes gauge\nnode_memory_working_set_bytes %d %d\n", fakeMemory, ms)
}

func (k *fakeKubelet) scrapedBy() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := map[string]int{}
	for cn, n := range k.scrapers {
		m[cn] = n
	}
	return m
}

// registerNode creates the Node the way the real node registers itself: only
// an InternalIP (metrics-server runs with --kubelet-preferred-address-types
// =InternalIP). Unschedulable, so nothing lands on it. Nodes may set their
// status on create.
func registerNode(t *testing.T, admin string, s *controlplane.Summary) {
	t.Helper()
	node := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": s.Node.Name},
		"spec":     map[string]any{"unschedulable": true},
		"status": map[string]any{
			"addresses":   []any{map[string]string{"type": "InternalIP", "address": s.Node.IP}},
			"capacity":    map[string]string{"cpu": "2", "memory": "4Gi"},
			"allocatable": map[string]string{"cpu": "2", "memory": "4Gi"},
		},
	}
	b, _ := json.Marshal(node)
	path := fmt.Sprintf("%s/node.json", t.TempDir())
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "kubectl", admin, "create", "-f", path)
}

// checkMetricsAPI proves the aggregation path: the APIService is Available
// and metrics.k8s.io answers through the apiserver.
func checkMetricsAPI(t *testing.T, admin string) {
	t.Helper()
	cond := run(t, "kubectl", admin, "get", "apiservice", "v1beta1.metrics.k8s.io",
		"-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
	if cond != "True" {
		t.Fatalf("APIService v1beta1.metrics.k8s.io Available = %q after up", cond)
	}
	for _, kind := range []string{"nodes", "pods"} {
		out := run(t, "kubectl", admin, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/"+kind)
		var list struct{ Kind, APIVersion string }
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.APIVersion != "metrics.k8s.io/v1beta1" ||
			!strings.HasSuffix(list.Kind, "MetricsList") {
			t.Errorf("GET metrics.k8s.io %s: %v\n%s", kind, err, out)
		}
	}
}

// checkNodeScraped registers a node backed by the fake kubelet and waits
// until metrics-server has scraped it twice (it needs two points for a CPU
// rate) and serves its usage.
func checkNodeScraped(t *testing.T, admin string, s *controlplane.Summary) {
	t.Helper()
	k := startFakeKubelet(t, s)
	defer k.srv.Close()
	registerNode(t, admin, s)
	start := time.Now()
	var usage struct{ CPU, Memory string }
	eventually(t, "metrics of node "+s.Node.Name, 60*time.Second, func() (bool, string) {
		out, err := output("kubectl", admin, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/"+s.Node.Name)
		var m struct {
			Usage struct{ CPU, Memory string } `json:"usage"`
		}
		if err != nil || json.Unmarshal([]byte(out), &m) != nil {
			return false, fmt.Sprintf("%v: %s; scraped by %v", err, out, k.scrapedBy())
		}
		usage = m.Usage
		return true, ""
	})
	t.Logf("node metrics served %v after the node registered: %+v; scrapes: %v",
		time.Since(start).Round(100*time.Millisecond), usage, k.scrapedBy())
	if got := k.scrapedBy(); len(got) != 1 || got[pki.MetricsServerUser] < 2 {
		t.Errorf("the kubelet was scraped by %v, want only %s, at least twice", got, pki.MetricsServerUser)
	}
	if m := milliCores(t, usage.CPU); m < 240 || m > 260 {
		t.Errorf("cpu usage %s (%dm), want %vm", usage.CPU, m, fakeCPUCores*1000)
	}
	// What kubectl top shows: 250m and 256Mi.
	top := strings.Fields(run(t, "kubectl", admin, "top", "node", s.Node.Name, "--no-headers"))
	if len(top) < 4 || top[0] != s.Node.Name || top[3] != "256Mi" {
		t.Errorf("kubectl top node: %q, want memory 256Mi", top)
	}
}

// milliCores parses the CPU quantities metrics-server emits: "<n>n", "<n>u",
// "<n>m" or whole cores.
func milliCores(t *testing.T, q string) int64 {
	t.Helper()
	div := map[byte]float64{'n': 1e6, 'u': 1e3, 'm': 1}
	num, d := q, 1e-3
	if len(q) > 0 {
		if v, ok := div[q[len(q)-1]]; ok {
			num, d = q[:len(q)-1], v
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		t.Fatalf("cpu quantity %q: %v", q, err)
	}
	return int64(n / d)
}

// checkWithoutMetricsServer brings a cluster up with --metrics-server=false:
// no metrics-server process, no metrics.k8s.io, and still ready.
func checkWithoutMetricsServer(t *testing.T, tool, dir string) {
	t.Helper()
	ns := fmt.Sprintf("vk-it-nm-%d", os.Getpid())
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			if out, err := output(tool, "down", "--dir", dir); err != nil {
				t.Logf("cleanup down: %v\n%s", err, out)
			}
		}
	})
	out := streamed(t, tool, "up", "--dir", dir, "--netns", ns, "--host-ip", hostIP, "--ip", nsIP,
		"--node-name", nodeName, "--metrics-server=false")
	var s controlplane.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("up printed no JSON summary: %v\n%s", err, out)
	}
	if _, ok := s.Components["metrics-server"]; ok || s.MetricsServer != nil || !s.Ready {
		t.Errorf("--metrics-server=false: ready=%v metricsServer=%+v components=%v", s.Ready, s.MetricsServer, s.Components)
	}
	if out, err := output("kubectl", "--kubeconfig="+s.AdminKubeconfig, "get", "--raw", "/apis/metrics.k8s.io"); err == nil {
		t.Errorf("metrics.k8s.io is served without metrics-server: %s", out)
	}
	if out, err := output(tool, "status", "--dir", dir); err != nil {
		t.Errorf("status without metrics-server: %v\n%s", err, out)
	}
	streamed(t, tool, "down", "--dir", dir)
	downDone = true
}
