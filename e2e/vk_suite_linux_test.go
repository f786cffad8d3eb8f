package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
	corev1 "k8s.io/api/core/v1"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// skippedVKTests are virtual-kubelet e2e tests that cannot apply to this
// node, each with the reason. (The suite's pods use the images foo, bar and
// baz, which the node pulls through its --registry-mirror from the test
// registry: busybox that sleeps. Everything else runs for real.)
var skippedVKTests = map[string]string{
	// Both reach the node through pods/<node-name>/proxy: the suite expects
	// the virtual-kubelet to run as a pod named after its node, serving
	// its API without authentication to the API server's pod proxy.
	// vk-applevm runs on the host (a Mac), and its kubelet API demands
	// credentials that pod proxying does not carry. TestStatsThroughNodeProxy
	// makes the same checks through nodes/<node-name>/proxy.
	"TestGetStatsSummary":    "needs the node to run as a pod reached through pods/proxy (see TestStatsThroughNodeProxy)",
	"TestGetMetricsResource": "needs the node to run as a pod reached through pods/proxy (see TestStatsThroughNodeProxy)",
}

// TestVirtualKubeletSuite runs virtual-kubelet's own importable e2e suite
// (test/e2e: GetPods, stats summary, metrics resource, graceful and force
// delete, optional and mandatory missing secrets and configMaps) against
// the node.
func TestVirtualKubeletSuite(t *testing.T) {
	ne := clusterNode(t)
	suite := vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
		Kubeconfig:   ne.c.AdminKubeconfig,
		Namespace:    "default",
		NodeName:     ne.name,
		WatchTimeout: 3 * time.Minute,
		ShouldSkipTest: func(name string) bool {
			if why, ok := skippedVKTests[name]; ok {
				t.Logf("skipping %s: %s", name, why)
				return true
			}
			return false
		},
	})
	suite.Run(t)
}

// TestStatsThroughNodeProxy checks what the two skipped suite tests check —
// a three-container pod appears in /stats/summary with every container, and
// in /metrics/resource with a pod series and one series per container —
// through the node proxy, with the API server's authenticated client.
func TestStatsThroughNodeProxy(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("three")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c0, image: foo}
  - {name: c1, image: bar}
  - {name: c2, image: baz}
`, name))
	p := ne.waitPod(t, name, "Running and Ready", 4*time.Minute, func(p corev1.Pod) bool { return podRunning(p) && podReady(p) })
	var summary stats.Summary
	raw := ne.kubectl(t, "get", "--raw", "/api/v1/nodes/"+ne.name+"/proxy/stats/summary")
	if err := json.Unmarshal([]byte(raw), &summary); err != nil {
		t.Fatalf("summary: %v\n%s", err, raw)
	}
	found := false
	for _, ps := range summary.Pods {
		if ps.PodRef.Name == p.Name && ps.PodRef.UID == string(p.UID) {
			found = true
			if len(ps.Containers) != 3 {
				t.Fatalf("summary has %d containers of %s, want 3", len(ps.Containers), p.Name)
			}
		}
	}
	if !found || summary.Node.NodeName != ne.name {
		t.Fatalf("summary lacks pod %s (node %q)", p.Name, summary.Node.NodeName)
	}
	metrics := ne.kubectl(t, "get", "--raw", "/api/v1/nodes/"+ne.name+"/proxy/metrics/resource")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string) int {
		n := 0
		if f, ok := families[name]; ok {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "pod" && l.GetValue() == p.Name {
						n++
					}
				}
			}
		}
		return n
	}
	if count("pod_cpu_usage_seconds_total") != 1 || count("container_cpu_usage_seconds_total") != 3 {
		t.Fatalf("metrics: %d pod series, %d container series for %s\n%s", count("pod_cpu_usage_seconds_total"),
			count("container_cpu_usage_seconds_total"), p.Name, metrics)
	}
}
