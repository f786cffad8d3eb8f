package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
)

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podRunning(p corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
}

const webDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  replicas: 1
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      nodeSelector: {type: virtual-kubelet}
      tolerations:
      - {key: virtual-kubelet.io/provider, operator: Equal, value: applevm, effect: NoSchedule}
      containers:
      - name: web
        image: BUSYBOX
        command: ["sh", "-c", "echo served-by-pod > /tmp/index.html; echo serving; (i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done) & exec httpd -f -v -p 8080 -h /tmp"]
        ports: [{containerPort: 8080}]
`

// webPod returns the running pod of the web Deployment called deployment.
func (ne *nodeEnv) webPod(t *testing.T, deployment string) corev1.Pod {
	t.Helper()
	var name string
	deadline := time.Now().Add(3 * time.Minute)
	for name == "" {
		out := ne.kubectl(t, "get", "pods", "-l", "app="+deployment, "-o", "jsonpath={.items[0].metadata.name}")
		name = strings.TrimSpace(out)
		if time.Now().After(deadline) {
			t.Fatal("the web Deployment has no pod")
		}
		if name == "" {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return ne.waitPod(t, name, "Running and Ready", 3*time.Minute, func(p corev1.Pod) bool { return podRunning(p) && podReady(p) })
}

// TestNode drives the node through kubectl against a real control plane;
// subtests share one cluster and build on the web Deployment.
func TestNode(t *testing.T) {
	ne := clusterNode(t)
	web := uniqueName("web")
	ne.apply(t, named(webDeployment, web))
	pod := ne.webPod(t, web)
	t.Logf("web pod %s on %s with IP %s", pod.Name, pod.Spec.NodeName, pod.Status.PodIP)
	if pod.Spec.NodeName != ne.name || pod.Status.HostIP != ne.c.Node.IP {
		t.Fatalf("pod on node %q hostIP %q", pod.Spec.NodeName, pod.Status.HostIP)
	}

	t.Run("logs", func(t *testing.T) {
		ne.waitLogs(t, pod.Name, "serving")
	})
	t.Run("exec exit code", func(t *testing.T) {
		_, err := ne.c.Kubectl(context.Background(), "", "exec", pod.Name, "--", "sh", "-c", "exit 7")
		if code := exitCode(err); code != 7 {
			t.Fatalf("exec exit code %d (%v), want 7", code, err)
		}
	})
	t.Run("exec tty", func(t *testing.T) {
		cmd := diesWithTest(exec.Command("kubectl", "--kubeconfig", ne.c.AdminKubeconfig, "exec", "-it", pod.Name, "--",
			"sh", "-c", "tty; stty size; exit 5"))
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 88})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		out, _ := io.ReadAll(ptmx)
		err = cmd.Wait()
		if code := exitCode(err); code != 5 || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "24 88") {
			t.Fatalf("exec -it: code %d (%v), output %q", code, err, out)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		if body := portForwardGet(t, ne, "default", pod.Name, 8080, "/index.html"); body != "served-by-pod\n" {
			t.Fatalf("body %q", body)
		}
	})
	t.Run("top", func(t *testing.T) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			out, err := ne.c.Kubectl(context.Background(), "", "top", "pod", pod.Name, "--no-headers")
			if err == nil && strings.HasPrefix(out, pod.Name) {
				t.Logf("kubectl top pod: %s", strings.TrimSpace(out))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubectl top pod: %v %q", err, out)
			}
			time.Sleep(3 * time.Second)
		}
		if out := ne.kubectl(t, "top", "node", ne.name, "--no-headers"); !strings.HasPrefix(out, ne.name) {
			t.Fatalf("kubectl top node: %q", out)
		}
	})
	t.Run("kubelet API auth", func(t *testing.T) {
		url := fmt.Sprintf("https://%s:10250/pods", ne.c.Node.IP)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		get := func(token string) int {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(""); code != http.StatusUnauthorized {
			t.Fatalf("no credentials: HTTP %d, want 401", code)
		}
		token := strings.TrimSpace(ne.kubectl(t, "create", "token", "default"))
		if code := get(token); code != http.StatusForbidden {
			t.Fatalf("service account without RBAC: HTTP %d, want 403", code)
		}
		// Read-only monitoring credentials (get nodes/proxy) read the
		// node but open no shell: exec over a WebSocket arrives as GET.
		monitor := fmt.Sprintf("monitor-%d", time.Now().UnixNano()%1e9)
		ne.kubectl(t, "create", "serviceaccount", monitor)
		ne.kubectl(t, "create", "clusterrole", monitor, "--verb=get", "--resource=nodes/proxy")
		ne.kubectl(t, "create", "clusterrolebinding", monitor, "--clusterrole="+monitor, "--serviceaccount=default:"+monitor)
		t.Cleanup(func() {
			ne.c.Kubectl(context.Background(), "", "delete", "clusterrolebinding,clusterrole", monitor)
			ne.c.Kubectl(context.Background(), "", "delete", "serviceaccount", monitor)
		})
		mtoken := strings.TrimSpace(ne.kubectl(t, "create", "token", monitor))
		execURL := fmt.Sprintf("https://%s:10250/exec/default/%s/%s?command=id&output=1", ne.c.Node.IP, pod.Name, pod.Spec.Containers[0].Name)
		do := func(method, u, token string) int {
			req, _ := http.NewRequest(method, u, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		// The role takes a moment to reach the authorizer.
		for deadline := time.Now().Add(30 * time.Second); get(mtoken) != http.StatusOK; time.Sleep(time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("get nodes/proxy: GET /pods: HTTP %d, want 200", get(mtoken))
			}
		}
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if code := do(m, execURL, mtoken); code != http.StatusForbidden {
				t.Errorf("get nodes/proxy only: %s /exec: HTTP %d, want 403", m, code)
			}
		}
	})
	t.Run("doctor", func(t *testing.T) {
		// With the node's own credentials, where the node runs: every
		// check passes, the cluster's included.
		cmd := diesWithTest(exec.Command(ne.c.Tool, "exec", "--dir", ne.c.Dir, "--", env.bin, "--root", ne.root, "--guest", env.guestDir,
			"doctor", "--kubeconfig", filepath.Join(ne.root, "kubelet.kubeconfig")))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("doctor: %v\n%s", err, out)
		}
		for _, c := range []string{"hypervisor", "guest kernel and initrd", "disk space", "pod network", "cluster", "cluster RBAC", "clock"} {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c) + ` +ok `).Match(out) {
				t.Errorf("doctor's %s check is not ok:\n%s", c, out)
			}
		}
	})
	t.Run("node restart keeps the pod", func(t *testing.T) {
		before := ne.pod(t, pod.Name)
		started := before.Status.ContainerStatuses[0].State.Running.StartedAt
		lastBefore := lastTick(t, ne.kubectl(t, "logs", pod.Name))
		// kill -9: no goodbye from the node.
		ne.node.Stop(9, 0)
		killed := time.Now()
		time.Sleep(3 * time.Second) // the container goes on ticking meanwhile
		if err := ne.startNodeProcess(context.Background()); err != nil {
			t.Fatal(err)
		}
		after := ne.waitPod(t, pod.Name, "running again", 2*time.Minute, func(p corev1.Pod) bool { return podRunning(p) && podReady(p) })
		cs := after.Status.ContainerStatuses[0]
		if after.Status.PodIP != before.Status.PodIP || cs.RestartCount != 0 || cs.State.Running == nil || !cs.State.Running.StartedAt.Equal(&started) {
			t.Fatalf("after the node restart: IP %s→%s, container %+v", before.Status.PodIP, after.Status.PodIP, cs)
		}
		// Logs continue: the container numbers a tick every second; the ticks
		// written while the node was down and after it came back are all
		// there, none missing and none twice.
		want := lastBefore + int(time.Since(killed).Seconds()) + 3
		deadline := time.Now().Add(time.Minute)
		for {
			// The restarted node may answer NotFound until it has taken
			// the pod back, as a restarting kubelet does.
			out, err := ne.c.Kubectl(context.Background(), "", "logs", pod.Name)
			n := 0
			if err == nil {
				n = lastTick(t, out)
			}
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("logs of %s end at tick %d (%v), want tick %d within a minute: %q", pod.Name, n, err, want, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

// lastTick returns the web container's last tick number in its logs and
// fails the test unless the ticks before it are all there, once each, in
// order.
func lastTick(t *testing.T, logs string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		var k int
		if _, err := fmt.Sscanf(line, "tick %d", &k); err != nil {
			continue
		}
		if k != n+1 {
			t.Fatalf("tick %d follows tick %d in the logs: %q", k, n, logs)
		}
		n = k
	}
	if n == 0 {
		t.Fatalf("no ticks in the logs: %q", logs)
	}
	return n
}

// waitLogs polls kubectl logs until it holds every want.
func (ne *nodeEnv) waitLogs(t *testing.T, pod string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := ne.c.Kubectl(context.Background(), "", "logs", pod)
		ok := err == nil
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s: %q (%v), want %q", pod, out, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// tolerate is the scheduling stanza every test pod carries.
const tolerate = `
  nodeSelector: {type: virtual-kubelet}
  tolerations:
  - {key: virtual-kubelet.io/provider, operator: Equal, value: applevm, effect: NoSchedule}`

func TestNodePodLifecycle(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("lifecycle")
	ne.apply(t, named(`
apiVersion: v1
kind: ConfigMap
metadata: {name: NAME-settings}
data: {GREETING: hello-from-configmap, MODE: test}
---
apiVersion: v1
kind: Secret
metadata: {name: NAME-creds}
stringData: {password: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 20
  initContainers:
  - {name: first, image: BUSYBOX, command: ["sh", "-c", "echo first; sleep 1"]}
  - {name: second, image: BUSYBOX, command: ["sh", "-c", "echo second"]}
  containers:
  - name: app
    image: BUSYBOX
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo \"$GREETING $MODE\"; while true; do sleep 1; done"]
    envFrom: [{configMapRef: {name: NAME-settings}}]
    volumeMounts: [{name: creds, mountPath: /etc/creds, readOnly: true}]
    readinessProbe:
      exec: {command: ["test", "-f", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
  volumes:
  - {name: creds, secret: {secretName: NAME-creds}}
`, name))
	p := ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)

	t.Run("init containers ran in order", func(t *testing.T) {
		ics := p.Status.InitContainerStatuses
		if len(ics) != 2 || ics[0].State.Terminated == nil || ics[1].State.Terminated == nil {
			t.Fatalf("init statuses %+v", ics)
		}
		first, second := ics[0].State.Terminated, ics[1].State.Terminated
		app := p.Status.ContainerStatuses[0].State.Running
		if first.Reason != "Completed" || second.Reason != "Completed" || app == nil {
			t.Fatalf("init %+v %+v app %+v", first, second, p.Status.ContainerStatuses[0].State)
		}
		if second.StartedAt.Before(&first.FinishedAt) || app.StartedAt.Before(&second.FinishedAt) {
			t.Fatalf("out of order: first %v–%v, second %v–%v, app %v",
				first.StartedAt, first.FinishedAt, second.StartedAt, second.FinishedAt, app.StartedAt)
		}
		if out := ne.kubectl(t, "logs", name, "-c", "first"); out != "first\n" {
			t.Fatalf("init logs %q", out)
		}
	})
	t.Run("env from configMap and a secret volume", func(t *testing.T) {
		// Running means the process started, not that its first line has
		// reached the log: the shim writes output as the guest sends it.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			out := ne.kubectl(t, "logs", name)
			if strings.Contains(out, "hello-from-configmap test") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("logs %q", out)
			}
		}
		if out := ne.kubectl(t, "exec", name, "--", "cat", "/etc/creds/password"); out != "s3cr3t" {
			t.Fatalf("secret volume: %q", out)
		}
		// The volume follows the secret.
		ne.kubectl(t, "patch", "secret", name+"-creds", "-p", `{"stringData":{"password":"rotated"}}`)
		deadline := time.Now().Add(time.Minute)
		for {
			out, _ := ne.c.Kubectl(context.Background(), "", "exec", name, "--", "cat", "/etc/creds/password")
			if out == "rotated" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("secret volume not updated: %q", out)
			}
			time.Sleep(time.Second)
		}
	})
	t.Run("readiness probe flips Ready", func(t *testing.T) {
		if podReady(ne.pod(t, name)) {
			t.Fatal("Ready before the probe's file exists")
		}
		ne.kubectl(t, "exec", name, "--", "touch", "/tmp/ready")
		ne.waitPod(t, name, "Ready", time.Minute, podReady)
		ne.kubectl(t, "exec", name, "--", "rm", "/tmp/ready")
		ne.waitPod(t, name, "not Ready again", time.Minute, func(p corev1.Pod) bool { return !podReady(p) })
		if ev := ne.waitEvents(t, name, "Unhealthy", "{.items[*].reason}", func(s string) bool { return s != "" }); ev == "" {
			t.Fatal("no Unhealthy event")
		}
	})
	t.Run("graceful delete", func(t *testing.T) {
		start := time.Now()
		ne.kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=60s")
		took := time.Since(start)
		// The container exits on SIGTERM at once: the pod goes before its
		// 20 s grace period ends (a SIGKILL at its end would take 20 s and
		// the teardown). How long before is the machine's load: the
		// teardown of a VM under TCG takes seconds.
		if took >= 20*time.Second {
			t.Fatalf("delete took %v; the container exits on TERM at once and the grace period is 20 s", took)
		}
		t.Logf("deleted in %v", took.Round(time.Millisecond))
	})
}

func TestNodeGracePeriodThenKill(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("stubborn")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 4
  containers:
  - {name: app, image: BUSYBOX, command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
`, name))
	ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)
	start := time.Now()
	ne.kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=60s")
	took := time.Since(start)
	// Ignoring SIGTERM, it lives out its 4 s grace period, then SIGKILL.
	if took < 4*time.Second || took > 30*time.Second {
		t.Fatalf("delete took %v, want the 4 s grace period then a kill", took)
	}
	t.Logf("deleted in %v", took.Round(time.Millisecond))
}

func TestNodeCrashLoopBackOff(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("crasher")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: BUSYBOX, command: ["sh", "-c", "echo crashing; exit 3"]}
`, name))
	// The kubelet's back-off: 10 s, 20 s, ... (capped at 5 min) from an
	// instance's exit to the next one's start. Each instance shows as
	// lastState from its exit through the back-off and the next
	// instance's run, so polling sees every one; the restart count at
	// first sight says nothing about which one it is. Only the lower
	// bounds are the kubelet's promise: a loaded host adds to every gap
	// (a VM boot is in each), so gaps are not compared with each other.
	type instance struct{ started, finished time.Time }
	var runs []instance
	var announced []string // the back-offs the waiting state named, in order
	seen := map[int64]bool{}
	p := ne.waitPod(t, name, "restarted three times", 4*time.Minute, func(p corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			if d, ok := strings.CutPrefix(w.Message, "back-off "); ok {
				d, _, _ = strings.Cut(d, " ")
				if len(announced) == 0 || announced[len(announced)-1] != d {
					announced = append(announced, d)
				}
			}
		}
		if last := cs.LastTerminationState.Terminated; last != nil && !seen[last.StartedAt.Unix()] {
			seen[last.StartedAt.Unix()] = true
			runs = append(runs, instance{last.StartedAt.Time, last.FinishedAt.Time})
		}
		return cs.RestartCount >= 3
	})
	slices.SortFunc(runs, func(a, b instance) int { return a.started.Compare(b.started) })
	cs := p.Status.ContainerStatuses[0]
	if last := cs.LastTerminationState.Terminated; last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Fatalf("lastState %+v", cs.LastTerminationState)
	}
	ne.waitPod(t, name, "in CrashLoopBackOff", 2*time.Minute, func(p corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CrashLoopBackOff"
	})
	if len(runs) < 3 {
		t.Fatalf("saw only %d instances' start times", len(runs))
	}
	// Each back-off doubles the one before, from 10 s, up to the 5 min cap
	// (a poll may miss one, never see them out of order).
	t.Logf("back-offs announced: %v", announced)
	if len(announced) < 2 {
		t.Fatalf("saw %d back-offs announced (%v), want the growth", len(announced), announced)
	}
	var prev time.Duration
	for _, a := range announced {
		d, err := time.ParseDuration(a)
		steps := d / (10 * time.Second)
		doubling := d%(10*time.Second) == 0 && steps&(steps-1) == 0
		if err != nil || d <= prev || d > 5*time.Minute || !doubling && d != 5*time.Minute {
			t.Fatalf("back-offs %v: each must double the one before, from 10s, up to 5m", announced)
		}
		prev = d
	}
	// The API keeps whole seconds: a true gap of d shows as more than
	// d-1s.
	backoff := 10 * time.Second
	for i := range 2 {
		gap := runs[i+1].started.Sub(runs[i].finished)
		t.Logf("instance %d exited, instance %d started %v later (back-off %v)", i, i+1, gap, backoff)
		if gap <= backoff-time.Second {
			t.Fatalf("instance %d started %v after instance %d exited; the back-off there is %v (exits and starts: %+v)", i+1, gap, i, backoff, runs)
		}
		backoff *= 2
	}
	if ev := ne.waitEvents(t, name, "BackOff", "{.items[*].reason}", func(s string) bool { return s != "" }); ev == "" {
		t.Fatal("no BackOff event")
	}
	if out := ne.kubectl(t, "logs", name, "--previous"); out != "crashing\n" {
		t.Fatalf("logs --previous %q", out)
	}
}

func TestNodeRejectsUnsupportedPods(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("hostnet")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  hostNetwork: true
  containers:
  - {name: app, image: BUSYBOX, command: ["sleep", "100"]}
`, name))
	p := ne.waitPod(t, name, "Failed", 2*time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "UnsupportedByNode" || !strings.Contains(p.Status.Message, "hostNetwork") {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
}

func TestNodeSharedEmptyDir(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("shared")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: BUSYBOX
    command: ["sh", "-c", "while true; do date +%s > /data/now; sleep 1; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: reader
    image: BUSYBOX
    command: ["sleep", "3600"]
    volumeMounts: [{name: data, mountPath: /shared, readOnly: true}]
  volumes:
  - {name: data, emptyDir: {}}
`, name))
	ne.waitPod(t, name, "Running", 4*time.Minute, func(p corev1.Pod) bool { return podRunning(p) && podReady(p) })
	// Each container is its own VM; the emptyDir is one host directory
	// shared with both over virtio-fs.
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := ne.c.Kubectl(context.Background(), "", "exec", name, "-c", "reader", "--", "cat", "/shared/now")
		if err == nil && strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader VM does not see the writer VM's file: %q %v", out, err)
		}
		time.Sleep(time.Second)
	}
	if _, err := ne.c.Kubectl(context.Background(), "", "exec", name, "-c", "reader", "--", "touch", "/shared/x"); err == nil {
		t.Fatal("a readOnly mount of the emptyDir is writable")
	}
}

func TestNodeRestartRemovesPodsDeletedMeanwhile(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("doomed")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: BUSYBOX, command: ["sleep", "3600"]}
`, name))
	p := ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)
	vms := func() int {
		entries, _ := os.ReadDir(filepath.Join(ne.root, "vms"))
		n := 0
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(ne.root, "vms", e.Name(), "sandbox.json")); err == nil && strings.Contains(string(b), string(p.UID)) {
				n++
			}
		}
		return n
	}
	if vms() != 1 {
		t.Fatalf("%d VMs for the pod, want 1", vms())
	}
	ne.node.Stop(9, 0)
	// Deleted while the node is down: the API server removes it at once
	// (grace 0), no node acknowledges it.
	ne.kubectl(t, "delete", "pod", name, "--grace-period=0", "--force", "--wait=false")
	if err := ne.startNodeProcess(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for vms() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the VM of a pod deleted while the node was down is still there\nnode log:\n%s", ne.node.Tail(30))
		}
		time.Sleep(time.Second)
	}
}

func TestNodeAttach(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("attachable")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - {name: app, image: BUSYBOX, stdin: true, command: ["sh", "-c", "read line; echo got $line; exit 4"]}
`, name))
	ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)
	out, err := ne.c.Kubectl(context.Background(), "hello\n", "attach", "-i", name)
	if !strings.Contains(out, "got hello") {
		t.Fatalf("attach -i: %q %v", out, err)
	}
	p := ne.waitPod(t, name, "Failed", time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 4 {
		t.Fatalf("state %+v", p.Status.ContainerStatuses[0].State)
	}
}

// TestNodeRunInteractiveRemove is `kubectl run -i --rm --restart=Never`
// with a command that prints and fails at once: kubectl shows its output
// (attached, or from the logs when the container has exited before kubectl
// could attach) and exits with the container's exit code, then removes the
// pod.
func TestNodeRunInteractiveRemove(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("run-rm")
	t.Cleanup(func() {
		_, _ = ne.c.Kubectl(context.Background(), "", "delete", "pod", name, "--ignore-not-found", "--wait=false")
	})
	overrides := `{"apiVersion": "v1", "spec": {"terminationGracePeriodSeconds": 1,
		"nodeSelector": {"type": "virtual-kubelet"},
		"tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "applevm", "effect": "NoSchedule"}]}}`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := ne.c.Kubectl(ctx, "", "run", name, "-i", "--rm", "--restart=Never", "--image="+ne.busybox,
		"--pod-running-timeout=4m", "--overrides="+overrides, "--", "sh", "-c", "echo last; exit 3")
	if code := exitCode(err); code != 3 || strings.Count(out, "last\n") != 1 {
		t.Fatalf("kubectl run -i --rm: exit code %d, output %q (%v); want \"last\" once and exit code 3\nnode log:\n%s", code, out, err, ne.node.Tail(30))
	}
	if got, err := ne.c.Kubectl(ctx, "", "get", "pod", name, "--ignore-not-found", "-o", "name"); err != nil || got != "" {
		t.Fatalf("--rm left the pod: %q %v", got, err)
	}
}
