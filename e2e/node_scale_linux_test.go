package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// scalePods is how many pods TestNodeManyPodsAtOnce creates in one go.
const scalePods = 20

// TestNodeManyPodsAtOnce: 20 pods applied at once on a 2-core machine
// all reach Running; each pod's start (apply → first seen Running) is
// printed with the p50 and p95. Times are reported, not asserted.
func TestNodeManyPodsAtOnce(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("scale")
	var manifest strings.Builder
	for i := range scalePods {
		fmt.Fprintf(&manifest, `---
apiVersion: v1
kind: Pod
metadata: {name: %s-%d, labels: {scale: %s}}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  containers:
  - {name: app, image: BUSYBOX, command: ["sleep", "3600"]}
`, name, i, name)
	}
	start := time.Now()
	ne.apply(t, manifest.String())

	started := map[string]time.Duration{}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for len(started) < scalePods {
		out, err := ne.c.Kubectl(ctx, "", "get", "pods", "-l", "scale="+name, "-o", "json")
		if err != nil {
			t.Fatalf("%v (%d of %d Running)", err, len(started), scalePods)
		}
		var list corev1.PodList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if _, ok := started[p.Name]; !ok && podRunning(p) {
				started[p.Name] = time.Since(start)
			}
			if p.Status.Phase == corev1.PodFailed {
				t.Fatalf("pod %s failed: %s %s", p.Name, p.Status.Reason, p.Status.Message)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d pods Running after 15 minutes\nnode log:\n%s", len(started), scalePods, ne.node.Tail(40))
		case <-time.After(250 * time.Millisecond):
		}
	}
	var times []time.Duration
	for _, d := range started {
		times = append(times, d)
	}
	slices.Sort(times)
	pct := func(p int) time.Duration { return times[max(0, (p*len(times)+99)/100-1)] }
	t.Logf("%d pods applied at once, all Running; start (apply -> seen Running): p50 %v, p95 %v, first %v, last %v",
		scalePods, pct(50).Round(time.Millisecond), pct(95).Round(time.Millisecond),
		times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}
