package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	corev1 "k8s.io/api/core/v1"
)

// TestNodePodNetwork drives the pod network as a user would, with kubectl:
// one address per pod shared by its containers, pod to pod, Services by
// name, headless Services, hostPort, port-forward, dnsPolicy None, a pod
// that spoofs another's address, a node restart and a switch crash.
//
// Debian's busybox-static wget crashes (SIGSEGV, exit 139) when given -T:
// timeouts here come from busybox's timeout applet instead.
func TestNodePodNetwork(t *testing.T) {
	ne := clusterNode(t)
	ns := "net-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	ne.kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { ne.kubectl(t, "delete", "namespace", ns, "--wait=false") })
	// Another per run: the previous run's pod may still hold its port.
	hostPort := 18000 + int(os.Getpid()+int(nameSeq.Add(1)))%1000

	// web: a sidecar (first container) that waits for localhost:80 and is
	// Ready once it has fetched the page and only while the server answers
	// (Ready alone let the test read /tmp/page before the sidecar's next
	// attempt wrote it: seen in make test), and the web server (second
	// container) on port 80 with a hostPort.
	ne.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: %[1]s, labels: {app: web}}
spec:`+tolerate+`
  hostname: web-0
  subdomain: web-headless
  containers:
  - name: sidecar
    image: BUSYBOX
    command: ["sh", "-c", "until wget -q -O /tmp/page http://localhost:80/; do sleep 1; done; exec sleep 3600"]
    readinessProbe:
      exec: {command: ["sh", "-c", "test -s /tmp/page && wget -q -O /dev/null http://localhost:80/"]}
      periodSeconds: 2
  - name: server
    image: BUSYBOX
    command: ["sh", "-c", "echo served-by-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
    ports: [{containerPort: 80, hostPort: %[2]d}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: %[1]s}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %[1]s}
spec:`+tolerate+`
  containers:
  - {name: c, image: BUSYBOX, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: custom-dns, namespace: %[1]s}
spec:`+tolerate+`
  dnsPolicy: "None"
  dnsConfig:
    nameservers: ["10.9.9.9"]
    searches: ["example.test"]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  containers:
  - {name: c, image: BUSYBOX, command: ["sleep", "3600"]}
`, ns, hostPort))
	ready := func(p corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	web := ne.waitPodIn(t, ns, "web", "Ready", 5*time.Minute, ready)
	ne.waitPodIn(t, ns, "client", "Running", 5*time.Minute, podRunning)
	podIP := web.Status.PodIP
	if len(web.Status.PodIPs) != 1 || web.Status.PodIPs[0].IP != podIP || podIP == "" {
		t.Fatalf("web's podIPs %v, podIP %q: want exactly the pod's one address", web.Status.PodIPs, podIP)
	}
	exec := func(pod string, args ...string) (string, error) {
		return ne.c.Kubectl(context.Background(), "", append([]string{"exec", "-n", ns, pod, "--"}, args...)...)
	}
	t.Run("one address for both containers", func(t *testing.T) {
		for _, c := range []string{"sidecar", "server"} {
			out, err := ne.c.Kubectl(context.Background(), "", "exec", "-n", ns, "web", "-c", c, "--", "ip", "-o", "-4", "addr", "show", "eth0")
			if err != nil || !strings.Contains(out, " "+podIP+"/32 ") {
				t.Errorf("%s's eth0: %q %v, want %s", c, out, err, podIP)
			}
		}
		// The sidecar fetched the page from its sibling over localhost.
		if out, err := ne.c.Kubectl(context.Background(), "", "exec", "-n", ns, "web", "-c", "sidecar", "--", "cat", "/tmp/page"); err != nil || out != "served-by-web\n" {
			t.Errorf("the sidecar's localhost:80: %q %v", out, err)
		}
	})
	t.Run("pod to pod", func(t *testing.T) {
		if out, err := exec("client", "wget", "-q", "-O-", "http://"+podIP+"/"); err != nil || out != "served-by-web\n" {
			t.Fatalf("client → %s:80: %q %v", podIP, out, err)
		}
	})
	t.Run("service by name", func(t *testing.T) {
		for _, name := range []string{"web." + ns + ".svc.cluster.local", "web"} {
			var out string
			var err error
			// Endpoints reach the node's table a moment after the pod is
			// Ready.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
				out, err = exec("client", "timeout", "5", "wget", "-q", "-O-", "http://"+name+"/")
				if err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || out != "served-by-web\n" {
				t.Errorf("client → http://%s/: %q %v", name, out, err)
			}
		}
	})
	t.Run("headless service", func(t *testing.T) {
		for _, name := range []string{"web-headless." + ns + ".svc.cluster.local", "web-0.web-headless." + ns + ".svc.cluster.local"} {
			// The headless Service has an EndpointSlice of its own, which
			// reaches the node's table on its own time: web's answering
			// above says nothing of it.
			var out string
			var err error
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
				out, err = exec("client", "nslookup", name)
				if err == nil && strings.Contains(out, podIP) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || !strings.Contains(out, podIP) {
				t.Errorf("nslookup %s: %q %v, want %s", name, out, err, podIP)
			}
		}
	})
	t.Run("hostPort", func(t *testing.T) {
		body, err := getInClusterNS(ne, "http://"+net.JoinHostPort(ne.c.Node.IP, strconv.Itoa(hostPort))+"/")
		if err != nil || body != "served-by-web\n" {
			t.Fatalf("node %s:%d: %q %v", ne.c.Node.IP, hostPort, body, err)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		body := portForwardGet(t, ne, ns, "web", 80, "/")
		if body != "served-by-web\n" {
			t.Fatalf("port-forward: %q", body)
		}
	})
	t.Run("dnsPolicy None", func(t *testing.T) {
		ne.waitPodIn(t, ns, "custom-dns", "Running", 5*time.Minute, podRunning)
		out, err := exec("custom-dns", "cat", "/etc/resolv.conf")
		want := "nameserver 10.9.9.9\nsearch example.test\noptions ndots:2 edns0\n"
		if err != nil || out != want {
			t.Fatalf("resolv.conf:\n%s(%v)\nwant:\n%s", out, err, want)
		}
	})
	t.Run("spoofing gets nothing through", func(t *testing.T) {
		ne.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: spoofer, namespace: %s}
spec:`+tolerate+`
  containers:
  # NET_ADMIN: the attacker owns its VM's kernel and may set any
  # address; only the switch stands in its way.
  - {name: c, image: BUSYBOX, command: ["sleep", "3600"], securityContext: {capabilities: {add: [NET_ADMIN]}}}
`, ns))
		sp := ne.waitPodIn(t, ns, "spoofer", "Running", 5*time.Minute, podRunning)
		before := switchCounters(t, ne)
		// Take the client's address and ask web for its page from it.
		client := ne.podIn(t, ns, "client")
		script := fmt.Sprintf("ip addr del %s/32 dev eth0; ip addr add %s/32 dev eth0; ip route add 10.213.0.1 dev eth0; ip route add default via 10.213.0.1; timeout 5 wget -q -O- http://%s/", sp.Status.PodIP, client.Status.PodIP, podIP)
		if out, err := exec("spoofer", "sh", "-c", script); err == nil {
			t.Fatalf("a pod with another pod's address got an answer: %q", out)
		}
		after := switchCounters(t, ne)
		if after.Spoofed <= before.Spoofed {
			t.Errorf("the switch dropped no spoofed frames (%d → %d)", before.Spoofed, after.Spoofed)
		}
		// The real client still talks to web.
		if out, err := exec("client", "wget", "-q", "-O-", "http://"+podIP+"/"); err != nil || out != "served-by-web\n" {
			t.Fatalf("after the spoofing, client → web: %q %v", out, err)
		}
	})
	t.Run("node restart keeps pods talking", func(t *testing.T) {
		ne.node.Stop(syscall.SIGKILL, 0)
		if out, err := exec("client", "wget", "-q", "-O-", "http://"+podIP+"/"); err == nil {
			// kubectl exec needs the node; that it fails is expected. What
			// matters is below.
			_ = out
		}
		if err := ne.startNodeProcess(context.Background()); err != nil {
			t.Fatal(err)
		}
		if out, err := exec("client", "wget", "-q", "-O-", "http://"+podIP+"/"); err != nil || out != "served-by-web\n" {
			t.Fatalf("after the node's restart: %q %v", out, err)
		}
	})
	t.Run("switch crash recovers", func(t *testing.T) {
		st := switchStatus(t, ne)
		if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		var out string
		var err error
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			out, err = exec("client", "timeout", "2", "wget", "-q", "-O-", "http://"+podIP+"/")
			if err == nil {
				break
			}
		}
		if err != nil || out != "served-by-web\n" {
			t.Fatalf("a minute after the switch was killed: %q %v", out, err)
		}
		st2 := switchStatus(t, ne)
		if st2.Pid == st.Pid {
			t.Fatal("the switch has the killed one's pid")
		}
		t.Logf("pods talked again %s after the switch was killed (new switch pid %d)", time.Since(killed).Round(100*time.Millisecond), st2.Pid)
	})
}

// waitPodIn is waitPod in a namespace.
func (ne *nodeEnv) waitPodIn(t *testing.T, ns, name, what string, timeout time.Duration, cond func(corev1.Pod) bool) corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := ne.podIn(t, ns, name)
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s not %s after %s: phase %s, conditions %+v\nnode log:\n%s", ns, name, what, timeout, p.Status.Phase, p.Status.Conditions, ne.node.Tail(30))
		}
		time.Sleep(time.Second)
	}
}

func (ne *nodeEnv) podIn(t *testing.T, ns, name string) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	out := ne.kubectl(t, "get", "pod", "-n", ns, name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
	return p
}

// getInClusterNS GETs url from inside the cluster's network namespace
// (where the node's address is).
func getInClusterNS(ne *nodeEnv, url string) (string, error) {
	var body string
	err := netns.Do(filepath.Join(netns.Dir, ne.c.NetNS), func() error {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	return body, err
}

func switchStatus(t *testing.T, ne *nodeEnv) vswitch.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := vswitch.NewClient(switchnet.SwitchDir(ne.root)).Status(ctx)
	if err != nil {
		t.Fatalf("switch status: %v", err)
	}
	return st
}

func switchCounters(t *testing.T, ne *nodeEnv) vswitch.Counters {
	return switchStatus(t, ne).Counters
}

// portForwardGet runs `kubectl port-forward` to pod's port and GETs path
// through it.
func portForwardGet(t *testing.T, ne *nodeEnv, ns, pod string, port int, path string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := diesWithTest(osexec.CommandContext(ctx, "kubectl", "--kubeconfig", ne.c.AdminKubeconfig, "port-forward", "-n", ns, pod, "0:"+strconv.Itoa(port)))
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
		t.Fatalf("kubectl port-forward printed nothing in a minute; stderr %q", stderr.String())
	}
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("port-forward said %q", line)
	}
	resp, err := http.Get("http://127.0.0.1:" + m[1] + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
