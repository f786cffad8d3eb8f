// Command demo is `make run`: with no KUBECONFIG it starts a local control
// plane (hack/cluster) and this machine as its vk-applevm node; with
// KUBECONFIG set it joins that cluster instead. Either way it serves a
// busybox image from a local registry, runs a demo Deployment on the node
// and prints the kubectl commands to use it. `demo down` stops everything.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/localcluster"
)

//go:embed demo.yaml
var demoManifest string

const (
	outDir   = "_output/run"
	registry = "127.0.0.1:5000"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := os.Getwd()
	if err != nil {
		fail(err)
	}
	cmd := "up"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "up":
		err = up(ctx, repo)
	case "down":
		err = down(ctx, repo)
	default:
		err = fmt.Errorf("usage: demo [up|down]")
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "make run:", err)
	os.Exit(1)
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func up(ctx context.Context, repo string) error {
	if err := localcluster.CheckKubectl(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the node creates VMs, taps and network namespaces: run `make run` as root")
	}
	out := filepath.Join(repo, outDir)
	_ = down(ctx, repo) // a previous run's leftovers
	bin := filepath.Join(repo, "bin", "vk-applevm")
	root := filepath.Join(out, "root")
	guestDir := filepath.Join(repo, "bin", "guest", runtime.GOARCH)
	image := registry + "/busybox:latest"

	var c *localcluster.Cluster
	var kubeconfig string
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		step("KUBECONFIG is set: joining that cluster with this machine as a node")
		c = &localcluster.Cluster{AdminKubeconfig: kc}
		kubeconfig = kc
		if err := startDetached(filepath.Join(out, "registry.log"), nil,
			filepath.Join(repo, "bin", "testregistry"), "--listen", registry, "--push-busybox", "busybox:latest"); err != nil {
			return err
		}
		host, _ := os.Hostname()
		name := strings.ToLower(host) + "-applevm"
		config := filepath.Join(out, "node.yaml")
		step("writing the node's config %s", config)
		if err := writeFile(config, fmt.Sprintf(`# Written by make run: this machine joins $KUBECONFIG's cluster.
apiVersion: vk-applevm.io/v1alpha1
kind: NodeConfig
root: %s
kubeconfig: %s
nodeName: %s
`, root, kc, name)); err != nil {
			return err
		}
		if err := startDetached(filepath.Join(out, "node.log"), nil, bin, "--guest", guestDir, "node", "--config", config); err != nil {
			return err
		}
		c.Node.Name = name
	} else {
		step("starting a local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, metrics-server) in network namespace vk-applevm")
		step("first time: building it from the Go module proxy takes ~10 minutes on 2 cores; later runs reuse the cache")
		var err error
		c, err = localcluster.Up(ctx, localcluster.Options{Repo: repo, Dir: filepath.Join(out, "cluster"), Stderr: os.Stderr})
		if err != nil {
			return err
		}
		kubeconfig = c.AdminKubeconfig
		step("serving a busybox image from a local registry at %s (inside the namespace)", registry)
		if _, err := c.Start([]string{filepath.Join(repo, "bin", "testregistry"), "--listen", registry, "--push-busybox", "busybox:latest"},
			filepath.Join(out, "registry.log")); err != nil {
			return err
		}
		config := filepath.Join(out, "node.yaml")
		step("writing the node's config %s: it joins with a bootstrap token, as a kubelet joins a kubeadm cluster", config)
		if err := c.WriteNodeConfig(config, root); err != nil {
			return err
		}
		// The cluster approves the node's client certificate; its serving
		// certificate (kubectl logs/exec/port-forward) needs an admin's
		// approval, which the demo gives while it runs.
		approve, stopApprove := context.WithCancel(ctx)
		defer stopApprove()
		if err := c.ApproveServingCSRs(approve, c.Node.Name, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			return err
		}
		step("starting the vk-applevm node %s (every container a VM; log: %s)", c.Node.Name, filepath.Join(out, "node.log"))
		p, err := c.Start([]string{bin, "--guest", guestDir, "node", "--config", config}, filepath.Join(out, "node.log"))
		if err != nil {
			return err
		}
		writePid(filepath.Join(out, "node.pid"), p.Cmd.Process.Pid)
	}

	step("waiting for node %s to be Ready", c.Node.Name)
	if err := localcluster.WaitFor(ctx, 3*time.Minute, "the node to be Ready", func() (bool, error) {
		return c.NodeReady(ctx, c.Node.Name)
	}); err != nil {
		return fmt.Errorf("%w (see %s)", err, filepath.Join(out, "node.log"))
	}
	step("applying the demo Deployment (busybox httpd; the pod is a VM)")
	if _, err := c.Kubectl(ctx, strings.ReplaceAll(demoManifest, "IMAGE", image), "apply", "-f", "-"); err != nil {
		return err
	}
	step("waiting for the demo pod to be Running and Ready")
	var pod, ip string
	if err := localcluster.WaitFor(ctx, 5*time.Minute, "the demo pod", func() (bool, error) {
		o, err := c.Kubectl(ctx, "", "get", "pods", "-l", "app=demo", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(strings.TrimSpace(o), "\n") {
			f := strings.Fields(line)
			if len(f) == 4 && f[1] == "Running" && f[3] == "True" {
				pod, ip = f[0], f[2]
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		desc, _ := c.Kubectl(ctx, "", "describe", "pods", "-l", "app=demo")
		return fmt.Errorf("%w\n%s", err, desc)
	}
	nodes, _ := c.Kubectl(ctx, "", "get", "nodes", "-o", "wide")
	pods, _ := c.Kubectl(ctx, "", "get", "pods", "-o", "wide")
	fmt.Printf("\n%s\n%s\n", nodes, pods)
	fmt.Printf("The demo pod %s runs in its own VM with IP %s on node %s.\nTry:\n\n", pod, ip, c.Node.Name)
	fmt.Printf("  export KUBECONFIG=%s\n", kubeconfig)
	fmt.Printf("  kubectl get pods -o wide\n")
	fmt.Printf("  kubectl logs deploy/demo\n")
	fmt.Printf("  kubectl exec -it deploy/demo -- sh            # a shell in the VM\n")
	fmt.Printf("  kubectl port-forward deploy/demo 8080:8080 &   # then: curl http://127.0.0.1:8080/index.html\n")
	fmt.Printf("  kubectl top pod                                 # metrics-server scrapes the node (after ~30 s)\n")
	fmt.Printf("  kubectl scale deploy/demo --replicas=2          # one more VM\n")
	if c.Dir != "" {
		fmt.Printf("  %s exec --dir %s -- curl http://%s:8080/index.html   # the pod IP, from the node's namespace\n", c.Tool, c.Dir, ip)
	}
	fmt.Printf("\n  make stop   # stops the node, the VMs and the control plane\n\n")
	return nil
}

// down stops what up started; missing pieces are fine.
func down(ctx context.Context, repo string) error {
	out := filepath.Join(repo, outDir)
	if pid, err := readPid(filepath.Join(out, "node.pid")); err == nil {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	// Wait for the node to exit, then remove every VM and the VM network.
	time.Sleep(time.Second)
	bin := filepath.Join(repo, "bin", "vk-applevm")
	if root := filepath.Join(out, "root"); fileExists(root) && fileExists(bin) {
		cmd := exec.CommandContext(ctx, bin, "--root", root, "cleanup")
		if c := filepath.Join(out, "cluster"); fileExists(filepath.Join(c, "cluster.json")) {
			// The node ran inside the cluster's namespace: clean up there.
			cmd = exec.CommandContext(ctx, filepath.Join(repo, "hack", "bin", "cluster"), "exec", "--dir", c, "--", bin, "--root", root, "cleanup")
		}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		_ = cmd.Run()
	}
	for _, pidFile := range []string{"registry.log.pid", "node.log.pid"} {
		if pid, err := readPid(filepath.Join(out, pidFile)); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Signal(syscall.SIGTERM)
			}
		}
	}
	if tool := filepath.Join(repo, "hack", "bin", "cluster"); fileExists(tool) && fileExists(filepath.Join(out, "cluster")) {
		_ = exec.CommandContext(ctx, tool, "down", "--dir", filepath.Join(out, "cluster")).Run()
	}
	return nil
}

func startDetached(logFile string, env []string, argv ...string) error {
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	writePid(logFile+".pid", cmd.Process.Pid)
	return nil
}

func writeFile(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func writePid(path string, pid int) { _ = os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644) }

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
