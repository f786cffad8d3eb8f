package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/vk-applevm/vk-applevm/e2e/internal/leftovers"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/localcluster"
	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	corev1 "k8s.io/api/core/v1"
)

// nodeEnv is a real control plane (hack/cluster) with the vk-applevm node
// joined to it, all inside a network namespace of its own, shared by the
// node tests of one run.
type nodeEnv struct {
	c        *localcluster.Cluster
	name     string
	root     string
	node     *localcluster.Process
	nodeArgv []string
	// configDir holds what deploy/kina/join.sh wrote: the bootstrap
	// kubeconfig and the node's config file.
	configDir string
	// stopApprover ends the stand-in admin approving serving CSRs.
	stopApprover context.CancelFunc
	registry     string // inside the cluster's namespace, on loopback
	busybox      string
}

var (
	nodeOnce sync.Once
	theNode  *nodeEnv
	nodeErr  error
)

// clusterNode starts the cluster and the node on first use; TestMain's
// teardown stops them.
func clusterNode(t *testing.T) *nodeEnv {
	t.Helper()
	nodeOnce.Do(func() { theNode, nodeErr = startNode() })
	if nodeErr != nil {
		t.Fatalf("start the cluster and the node: %v", nodeErr)
	}
	return theNode
}

func startNode() (*nodeEnv, error) {
	if err := localcluster.CheckKubectl(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	n := os.Getpid()%200 + 20
	_, k8sNetNS := leftovers.Namespaces(os.Getpid())
	ne := &nodeEnv{name: "e2e-node", root: filepath.Join(filepath.Dir(env.root), "node-root")}
	dir := filepath.Join(filepath.Dir(env.root), "cluster")
	c, err := localcluster.Up(ctx, localcluster.Options{
		Repo: env.repo, Dir: dir, NetNS: k8sNetNS,
		HostIP: fmt.Sprintf("10.204.%d.1", n), IP: fmt.Sprintf("10.204.%d.2", n), NodeName: ne.name,
		SigningDuration: certLifetime, Stderr: os.Stderr,
	})
	if err != nil {
		return nil, err
	}
	ne.c = c
	theNode = ne // so teardown finds it even if a later step fails

	// A registry on the namespace's loopback: busybox, and "library/foo"
	// (what virtual-kubelet's e2e suite asks for) as busybox that sleeps.
	reg, err := imagetest.NewRegistry()
	if err != nil {
		return nil, err
	}
	img, err := imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return nil, err
	}
	if _, err := reg.PushImage(ctx, "busybox:latest", img); err != nil {
		return nil, err
	}
	sleeper, err := withCmd(img, []string{"sleep", "3600"})
	if err != nil {
		return nil, err
	}
	// virtual-kubelet's suite names its containers' images foo, bar, baz.
	for _, name := range []string{"foo", "bar", "baz"} {
		if _, err := reg.PushImage(ctx, "library/"+name+":latest", sleeper); err != nil {
			return nil, err
		}
	}
	var ln net.Listener
	if err := netns.Do(filepath.Join(netns.Dir, c.NetNS), func() error {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return nil, err
	}
	reg.ServeAlso(ln)
	ne.registry = ln.Addr().String()
	ne.busybox = ne.registry + "/busybox:latest"

	// The node joins as a kina user's Mac does: deploy/kina/join.sh (all
	// but the service step) run where the node runs, in the cluster's
	// namespace, then `vk-applevm node --config` with what it wrote.
	ne.configDir = filepath.Join(filepath.Dir(env.root), "node-config")
	join := diesWithTest(exec.CommandContext(ctx, c.Tool, "exec", "--dir", c.Dir, "--", "sh", filepath.Join(env.repo, "deploy", "kina", "join.sh"),
		"--kubeconfig", c.AdminKubeconfig, "--node-name", ne.name, "--dir", ne.configDir, "--root", ne.root, "--bin", env.bin, "--no-service"))
	if out, err := join.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("deploy/kina/join.sh: %v\n%s", err, out)
	}
	// An admin approves the node's serving certificates (the cluster
	// approves only client ones), renewals included.
	approveCtx, stopApprover := context.WithCancel(context.Background())
	ne.stopApprover = stopApprover
	if err := c.ApproveServingCSRs(approveCtx, ne.name, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		return nil, err
	}
	ne.nodeArgv = []string{env.bin, "--guest", env.guestDir, "node", "--config", filepath.Join(ne.configDir, "node.yaml"),
		"--registry-mirror", "index.docker.io=" + ne.registry}
	if err := ne.startNodeProcess(ctx); err != nil {
		return nil, err
	}
	return ne, nil
}

// certLifetime is what the cluster's CSR signer issues for: short, so the
// node renews its client and serving certificates several times while the
// node tests run (the signer backdates by 5 minutes, and the certificate
// manager renews at 70–90 % of NotBefore..NotAfter: every 1.3–3.1 min).
const certLifetime = 4 * time.Minute

// withCmd returns img with another default command.
func withCmd(img v1.Image, cmd []string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := cf.Config
	cfg.Cmd = cmd
	return mutate.Config(img, cfg)
}

func (ne *nodeEnv) startNodeProcess(ctx context.Context) error {
	p, err := ne.c.StartOwned(ne.nodeArgv, filepath.Join(filepath.Dir(env.root), "node.log"))
	if err != nil {
		return err
	}
	ne.node = p
	// Ready may still be True from a node process that was just killed:
	// also wait for this process to serve the kubelet API.
	if err := localcluster.WaitFor(ctx, 3*time.Minute, "the node to be Ready and serving", func() (bool, error) {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ne.c.Node.IP, "10250"), time.Second)
		if err != nil {
			return false, err
		}
		conn.Close()
		return ne.c.NodeReady(ctx, ne.name)
	}); err != nil {
		return fmt.Errorf("%w\nnode log:\n%s", err, p.Tail(40))
	}
	// virtual-kubelet serves the kubelet API before it has taken the
	// node's pods back (it listens, then syncs pods), and until then exec,
	// attach and logs answer NotFound: a restart is done when each running
	// container of the node's pods answers.
	if err := localcluster.WaitFor(ctx, 3*time.Minute, "the node to take its pods back", ne.servesItsPods(ctx)); err != nil {
		return fmt.Errorf("%w\nnode log:\n%s", err, p.Tail(40))
	}
	return nil
}

// servesItsPods is a WaitFor condition: the node serves the logs of one
// running container of each pod bound to it that is not being deleted.
func (ne *nodeEnv) servesItsPods(ctx context.Context) func() (bool, error) {
	return func() (bool, error) {
		out, err := ne.c.Kubectl(ctx, "", "get", "pods", "-A", "--field-selector", "spec.nodeName="+ne.name+",status.phase=Running", "-o", "json")
		if err != nil {
			return false, err
		}
		var pods corev1.PodList
		if err := json.Unmarshal([]byte(out), &pods); err != nil {
			return false, err
		}
		for _, pod := range pods.Items {
			if pod.DeletionTimestamp != nil {
				continue
			}
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.State.Running == nil {
					continue
				}
				if _, err := ne.c.Kubectl(ctx, "", "logs", "-n", pod.Namespace, pod.Name, "-c", cs.Name, "--limit-bytes=1"); err != nil {
					return false, fmt.Errorf("logs of %s/%s: %w", pod.Namespace, pod.Name, err)
				}
				break
			}
		}
		return true, nil
	}
}

func stopClusterNode() {
	if theNode == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ne := theNode
	if ne.stopApprover != nil {
		ne.stopApprover()
	}
	ne.node.Stop(syscall.SIGTERM, 10*time.Second)
	if ne.c != nil {
		// Remove the node's VMs and VM network, then the cluster.
		_, _ = ne.c.StartOwned(append([]string{env.bin, "--root", ne.root, "--guest", env.guestDir}, "cleanup"),
			filepath.Join(filepath.Dir(env.root), "cleanup.log"))
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if entries, _ := os.ReadDir(filepath.Join(ne.root, "vms")); len(entries) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		_ = switchnet.Stop(ctx, ne.root)
		if err := ne.c.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e teardown:", err)
		}
	}
}

// kubectl runs kubectl against the cluster.
func (ne *nodeEnv) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := ne.c.Kubectl(ctx, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply creates objects from a manifest and deletes them when the test ends.
func (ne *nodeEnv) apply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	manifest = strings.ReplaceAll(manifest, "BUSYBOX", ne.busybox)
	if _, err := ne.c.Kubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = ne.c.Kubectl(ctx, manifest, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	})
}

// pod fetches a pod.
func (ne *nodeEnv) pod(t *testing.T, name string) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal([]byte(ne.kubectl(t, "get", "pod", name, "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPod polls a pod until cond holds.
func (ne *nodeEnv) waitPod(t *testing.T, name, what string, timeout time.Duration, cond func(corev1.Pod) bool) corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last corev1.Pod
	for {
		out, err := ne.c.Kubectl(ctx, "", "get", "pod", name, "-o", "json")
		if err == nil {
			var p corev1.Pod
			if json.Unmarshal([]byte(out), &p) == nil {
				last = p
				if cond(p) {
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			desc, _ := ne.c.Kubectl(context.Background(), "", "describe", "pod", name)
			t.Fatalf("pod %s never %s; last: %+v\n%s\nnode log:\n%s", name, what, last.Status, desc, ne.node.Tail(30))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitEvents polls the events of an object (those with reason, if not
// empty), printed with the jsonpath format, until ok holds or a minute has
// passed, and returns the last output. The node's recorder writes events
// in the background, queued behind earlier ones and retried on failure: a
// status seen says nothing of the events recorded with it.
func (ne *nodeEnv) waitEvents(t *testing.T, object, reason, format string, ok func(string) bool) string {
	t.Helper()
	selector := "involvedObject.name=" + object
	if reason != "" {
		selector += ",reason=" + reason
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out := ne.kubectl(t, "get", "events", "--field-selector", selector, "-o", "jsonpath="+format)
		if ok(out) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(time.Second)
	}
}
