//go:build soak

package e2e

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
)

// `make soak` (go test -tags soak -run TestSoak ./e2e): a node left
// running with pods coming and going. Not part of make test: it takes
// about 15 minutes for 200 pods on two cores under TCG.
var (
	soakPods = flag.Int("soak.pods", 200, "pods to create and delete in all")
	soakWave = flag.Int("soak.wave", 10, "pods per wave")
)

// TestSoak creates and deletes pods in waves and then checks that the node
// kept nothing of them: no VMs, helpers, virtiofsd, switch ports,
// addresses or files under the state root (images aside), no descriptors
// beyond the baseline, and a flat RSS. It prints the figures.
func TestSoak(t *testing.T) {
	ne := clusterNode(t)
	ns := "soak-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	ne.kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { ne.kubectl(t, "delete", "namespace", ns, "--wait=false") })
	pid := nodePid(t, ne)
	waves := max(*soakPods / *soakWave, 2)
	var baseFDs, baseRSS int
	start := time.Now()
	for w := 0; w < waves; w++ {
		var manifest strings.Builder
		for i := 0; i < *soakWave; i++ {
			fmt.Fprintf(&manifest, `---
apiVersion: v1
kind: Pod
metadata: {name: p%d-%d, namespace: %s, labels: {wave: "w%d"}}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    command: ["sh", "-c", "echo started; echo data > /data/f; exec sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
`, w, i, ns, w)
		}
		ne.apply(t, manifest.String())
		ne.kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "pod", "-l", "wave=w"+strconv.Itoa(w), "--timeout=10m")
		ne.kubectl(t, "delete", "-n", ns, "pod", "-l", "wave=w"+strconv.Itoa(w), "--wait=true", "--timeout=5m")
		fds, rss := procFDs(t, pid), procRSS(t, pid)
		t.Logf("wave %d/%d done after %s: node fds %d, RSS %d KiB", w+1, waves, time.Since(start).Round(time.Second), fds, rss)
		if w == 0 {
			// The first wave fills caches and pools: the baseline is the
			// node after it.
			baseFDs, baseRSS = fds, rss
		}
	}
	// Give the last deletions' cleanup (directories, addresses) a moment
	// to finish: the pod objects are gone before the node is done.
	var left []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		left = soakLeftovers(t, ne)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	fds, rss := procFDs(t, pid), procRSS(t, pid)
	t.Logf("soak: %d pods in %d waves of %d in %s; node fds %d (baseline %d), RSS %d KiB (baseline %d, %.2f×); leftovers %d",
		waves**soakWave, waves, *soakWave, time.Since(start).Round(time.Second), fds, baseFDs, rss, baseRSS, float64(rss)/float64(baseRSS), len(left))
	t.Logf("soak: left behind: %s", leftoverFigures(left))
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
	if fds > baseFDs {
		t.Errorf("the node holds %d descriptors, %d more than after the first wave", fds, fds-baseFDs)
	}
	if float64(rss) > 1.10*float64(baseRSS) {
		t.Errorf("the node's RSS grew from %d to %d KiB (more than 10 %%)", baseRSS, rss)
	}
}

// leftoverFigures counts what soakLeftovers found, per kind.
func leftoverFigures(left []string) string {
	kinds := []string{"VM directories", "pod directories", "shims", "QEMUs", "virtiofsds", "switch ports", "address leases", "other files"}
	n := make([]int, len(kinds))
	for _, l := range left {
		switch {
		case strings.HasPrefix(l, "vms/"):
			n[0]++
		case strings.HasPrefix(l, "pods/"):
			n[1]++
		case strings.HasPrefix(l, "process: ") && strings.Contains(l, "virtiofsd"):
			n[4]++
		case strings.HasPrefix(l, "process: ") && strings.Contains(l, "qemu"):
			n[3]++
		case strings.HasPrefix(l, "process: "):
			n[2]++
		case strings.HasPrefix(l, "switch port: "):
			n[5]++
		case strings.HasPrefix(l, "address lease: "):
			n[6]++
		default:
			n[7]++
		}
	}
	var parts []string
	for i, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[i]))
	}
	return strings.Join(parts, ", ")
}

// nodePid is the node process's pid.
func nodePid(t *testing.T, ne *nodeEnv) int {
	out, err := exec.Command("pgrep", "-f", "^"+regexpQuote(env.bin)+" .*node --config").Output()
	if err != nil {
		t.Fatalf("find the node process: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 {
		t.Fatalf("node processes: %q", out)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func procFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatalf("the node's descriptors: %v", err)
	}
	return len(ents)
}

func procRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// soakLeftovers lists what the node's pods left: VM directories, pod
// directories, helpers and virtiofsd processes of the state root, switch
// endpoints and address leases.
func soakLeftovers(t *testing.T, ne *nodeEnv) []string {
	var out []string
	for _, dir := range []string{"vms", "pods"} {
		ents, _ := os.ReadDir(filepath.Join(ne.root, dir))
		for _, e := range ents {
			out = append(out, dir+"/"+e.Name())
		}
	}
	ps, _ := exec.Command("ps", "-eo", "pid,args").Output()
	for _, l := range strings.Split(string(ps), "\n") {
		if strings.Contains(l, ne.root+"/vms/") && (strings.Contains(l, "shim") || strings.Contains(l, "virtiofsd") || strings.Contains(l, "qemu")) {
			out = append(out, "process: "+strings.TrimSpace(l))
		}
	}
	for _, ep := range switchStatus(t, ne).Endpoints {
		out = append(out, fmt.Sprintf("switch port: %+v", ep))
	}
	alloc, err := network.NewAllocator(filepath.Join(ne.root, "network"), switchnet.DefaultSubnet)
	if err == nil {
		leases, err := alloc.Leases(context.Background())
		if err != nil {
			t.Errorf("read the address leases: %v", err)
		}
		for _, l := range leases {
			out = append(out, fmt.Sprintf("address lease: %v", l))
		}
	}
	// Anything else under the root that is not the node's own state.
	_ = filepath.WalkDir(ne.root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(ne.root, p)
		top := strings.SplitN(rel, string(filepath.Separator), 2)[0]
		switch top {
		case ".", "images", "network", "pki", "vms", "pods":
			return nil
		}
		if d != nil && !d.IsDir() && !ownState(rel) {
			out = append(out, "file: "+rel)
		}
		return nil
	})
	return out
}

// ownState is the node's own files at the top of its state root.
func ownState(rel string) bool {
	switch rel {
	case "node.lock", "kubelet.kubeconfig":
		return true
	}
	return false
}
