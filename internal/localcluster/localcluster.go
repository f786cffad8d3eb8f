// Package localcluster drives hack/cluster (a real control plane built from
// upstream modules, in a network namespace) and starts the vk-applevm node
// and a test registry inside it. `make run` and the node's end-to-end tests
// share it, so the demo is what the tests exercise.
package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Cluster is the summary `cluster up` prints (the fields used here).
type Cluster struct {
	Dir             string `json:"dir"`
	NetNS           string `json:"netns"`
	HostIP          string `json:"hostIP"`
	IP              string `json:"ip"`
	APIServer       string `json:"apiServer"`
	AdminKubeconfig string `json:"adminKubeconfig"`
	Node            struct {
		Name        string `json:"name"`
		IP          string `json:"ip"`
		Kubeconfig  string `json:"kubeconfig"`
		ServingCert string `json:"servingCert"`
		ServingKey  string `json:"servingKey"`
		ClientCA    string `json:"clientCA"`
		// BootstrapKubeconfig carries a bootstrap token: the node joins
		// with it alone, as a kubelet does (TLS bootstrapping).
		BootstrapKubeconfig string `json:"bootstrapKubeconfig"`
	} `json:"node"`
	MetricsServer *struct {
		Pid int `json:"pid"`
	} `json:"metricsServer,omitempty"`

	// Tool is the hack/cluster binary that made the cluster.
	Tool string `json:"-"`
}

// Options for Up.
type Options struct {
	// Repo is the repository root (hack/bin/cluster is built there).
	Repo string
	// Dir holds the cluster's files.
	Dir string
	// NetNS, HostIP and IP place the cluster (defaults: hack/cluster's).
	NetNS, HostIP, IP string
	NodeName          string
	// SigningDuration is the lifetime of certificates the cluster's CSR
	// signer issues (0: a year); short ones exercise renewal.
	SigningDuration time.Duration
	// Stderr receives the tool's progress (nil: discarded).
	Stderr *os.File
}

// Tool returns the hack/cluster binary, building it if needed (it is its
// own Go module, so it is built there).
func Tool(ctx context.Context, repo string) (string, error) {
	bin := filepath.Join(repo, "hack", "bin", "cluster")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(repo, "hack", "cluster")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hack/cluster: %v\n%s", err, out)
	}
	return bin, nil
}

// Up starts a fresh control plane (building the binaries on first use).
func Up(ctx context.Context, o Options) (*Cluster, error) {
	tool, err := Tool(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	args := []string{"up", "--dir", o.Dir}
	for flag, v := range map[string]string{"--netns": o.NetNS, "--host-ip": o.HostIP, "--ip": o.IP, "--node-name": o.NodeName} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	if o.SigningDuration > 0 {
		args = append(args, "--cluster-signing-duration", o.SigningDuration.String())
	}
	cmd := exec.CommandContext(ctx, tool, args...)
	dieWithCaller(cmd)
	var out bytes.Buffer
	cmd.Stdout = &out
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cluster up: %w", err)
	}
	var c Cluster
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		return nil, fmt.Errorf("parse cluster summary: %w", err)
	}
	c.Tool = tool
	return &c, nil
}

// Down stops the cluster and deletes its namespace.
func (c *Cluster) Down(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.Tool, "down", "--dir", c.Dir)
	dieWithCaller(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("cluster down: %v: %s", err, out)
	}
	return nil
}

// Process is a detached process started inside the cluster's namespace.
type Process struct {
	Cmd *exec.Cmd
	Log string
}

// Start runs argv inside the cluster's network namespace, detached (own
// session) with its output in logFile; it survives the caller.
func (c *Cluster) Start(argv []string, logFile string, env ...string) (*Process, error) {
	return c.start(argv, logFile, false, env)
}

// StartOwned is Start for a process that must not outlive the caller (a
// test's node): on Linux it gets SIGKILL when the caller ends, however the
// caller ends.
func (c *Cluster) StartOwned(argv []string, logFile string, env ...string) (*Process, error) {
	return c.start(argv, logFile, true, env)
}

func (c *Cluster) start(argv []string, logFile string, owned bool, env []string) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(c.Tool, append([]string{"exec", "--dir", c.Dir, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if owned {
		if err := startOnOwnThread(cmd); err != nil {
			return nil, fmt.Errorf("start %s: %w", argv[0], err)
		}
		return &Process{Cmd: cmd, Log: logFile}, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go cmd.Wait() // reap when it ends while we still run
	return &Process{Cmd: cmd, Log: logFile}, nil
}

// Stop ends the process: sig, then SIGKILL after grace. It returns once
// the process has ended (or a minute after the kill), so that what it held
// (a state root's lock, a listening port) is free for a successor started
// next: a signal only asks, and on a loaded machine the process may not run
// to its end for a while.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(sig)
	if p.waitEnded(grace) {
		return
	}
	_ = p.Cmd.Process.Kill()
	p.waitEnded(time.Minute)
}

// waitEnded polls for up to bound (at least once) until the process has
// been reaped (a Wait of this package's runs for every process it starts).
func (p *Process) waitEnded(bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		if err := p.Cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tail is the end of the process's log, for error messages.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// NodeConfig is the node's config file (vk-applevm.io/v1alpha1) for
// joining this cluster the way a kubelet joins a kubeadm cluster: from the
// bootstrap kubeconfig alone. The node writes its own kubeconfig under
// root, its client certificate is approved by the cluster, its serving
// certificate is a kubelet-serving CSR (ApproveServingCSRs plays the
// admin), and the Node authorizer governs what it may do.
func (c *Cluster) NodeConfig(root string) string {
	return fmt.Sprintf(`# Written by internal/localcluster: the node joins %s by TLS bootstrapping.
apiVersion: vk-applevm.io/v1alpha1
kind: NodeConfig
root: %s
bootstrapKubeconfig: %s
kubeconfig: %s
nodeName: %s
nodeIP: %s
`, c.APIServer, root, c.Node.BootstrapKubeconfig, filepath.Join(root, "kubelet.kubeconfig"), c.Node.Name, c.Node.IP)
}

// WriteNodeConfig writes NodeConfig(root) to path.
func (c *Cluster) WriteNodeConfig(path, root string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(c.NodeConfig(root)), 0o644); err != nil {
		return fmt.Errorf("write node config: %w", err)
	}
	return nil
}

// Kubectl runs kubectl with the admin kubeconfig and returns its stdout.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	dieWithCaller(cmd)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// WaitFor polls fn until it returns true, an error, or timeout.
func WaitFor(ctx context.Context, timeout time.Duration, what string, fn func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := fn()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("timed out waiting for %s: %w", what, last)
			}
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NodeReady reports whether the node's Ready condition is True.
func (c *Cluster) NodeReady(ctx context.Context, name string) (bool, error) {
	out, err := c.Kubectl(ctx, "", "get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "True", nil
}

// ErrNoKubectl: kubectl is needed to drive the cluster.
var ErrNoKubectl = errors.New("kubectl not found in PATH (it ships with the machine at /usr/bin/kubectl; else install kubectl)")

// CheckKubectl fails with a hint when kubectl is missing.
func CheckKubectl() error {
	if _, err := exec.LookPath("kubectl"); err != nil {
		return ErrNoKubectl
	}
	return nil
}
