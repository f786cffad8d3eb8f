package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"
)

// GetContainerLogs serves `kubectl logs` from the log files the VM's shim
// writes on the host, so logs outlive the VM and survive node restarts.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	w, err := p.worker(namespace, podName)
	if err != nil {
		return nil, err
	}
	c := w.container(containerName)
	if c == nil {
		return nil, errdefs.NotFoundf("container %q is not in pod %s/%s", containerName, namespace, podName)
	}
	w.mu.Lock()
	restart := c.RestartCount
	hasLast := c.LastState != nil
	running := c.Running != nil
	pod := w.pod
	w.mu.Unlock()
	instance := restart
	if opts.Previous {
		if !hasLast || restart == 0 {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", containerName, podName)
		}
		instance = restart - 1
	}
	dir := filepath.Join(p.podDir(pod), containerName)
	name := strconv.Itoa(int(instance))
	ro := crilog.Options{Tail: -1, Timestamps: opts.Timestamps, LimitBytes: int64(opts.LimitBytes), Follow: opts.Follow && !opts.Previous}
	if opts.Tail > 0 {
		ro.Tail = opts.Tail
	}
	switch {
	case !opts.SinceTime.IsZero():
		ro.Since = opts.SinceTime
	case opts.SinceSeconds > 0:
		ro.Since = time.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	if ro.Follow {
		ro.Running = func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return c.Running != nil && c.RestartCount == instance
		}
	}
	if !running && !hasLast && !opts.Follow {
		// Never started: say why rather than returning nothing.
		if _, err := crilog.Segments(dir, name); err != nil {
			return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start: %s", containerName, podName, waitingReason(c))
		}
	}
	pr, pw := io.Pipe()
	go func() {
		err := crilog.Read(ctx, dir, name, pw, ro)
		if errors.Is(err, os.ErrNotExist) && (running || hasLast) {
			err = nil // started, has written nothing yet
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

func waitingReason(c *ctrState) string {
	if c.Waiting != nil && c.Waiting.Reason != "" {
		return c.Waiting.Reason
	}
	return reasonContainerCreating
}

func (w *podWorker) container(name string) *ctrState {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range append(append([]*ctrState{}, w.inits...), w.apps...) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// runningSandbox finds the VM of a running container.
func (p *Provider) runningSandbox(namespace, podName, containerName string) (*podWorker, *ctrState, Sandbox, error) {
	w, err := p.worker(namespace, podName)
	if err != nil {
		return nil, nil, nil, err
	}
	if containerName == "" {
		w.mu.Lock()
		if len(w.apps) > 0 {
			containerName = w.apps[0].Name
		}
		w.mu.Unlock()
	}
	c := w.container(containerName)
	if c == nil {
		return nil, nil, nil, errdefs.NotFoundf("container %q is not in pod %s/%s", containerName, namespace, podName)
	}
	w.mu.Lock()
	running := c.Running != nil
	sb := w.sandboxes[containerName]
	w.mu.Unlock()
	if !running || sb == nil {
		return nil, nil, nil, errdefs.InvalidInputf("container %q in pod %s/%s is not running", containerName, namespace, podName)
	}
	return w, c, sb, nil
}

var execSeq atomic.Uint64

// RunInContainer serves `kubectl exec`: a new process in the container's
// VM with the container's environment and identity. A non-zero exit is
// returned as an exec.ExitError so the client gets the code.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	w, c, sb, err := p.runningSandbox(namespace, podName, containerName)
	if err != nil {
		return err
	}
	proc := w.execConfig(c.Name, cmd)
	proc.ID = fmt.Sprintf("exec-%d", execSeq.Add(1))
	proc.TTY = attach.TTY()
	proc.Stdin = attach.Stdin() != nil
	stdio := container.IO{Stdin: attach.Stdin()}
	if out := attach.Stdout(); out != nil {
		stdio.Stdout = out
	}
	if e := attach.Stderr(); e != nil && !proc.TTY {
		stdio.Stderr = e
	}
	if proc.TTY {
		stdio.Resize = termSizes(ctx, attach.Resize())
	}
	exit, err := sb.Exec(ctx, proc, stdio)
	if err != nil {
		switch {
		case errors.Is(err, container.ErrCommandNotFound):
			return utilexec.CodeExitError{Err: err, Code: 127}
		case errors.Is(err, container.ErrCommandNotExecutable):
			return utilexec.CodeExitError{Err: err, Code: 126}
		}
		return fmt.Errorf("exec in container %s: %w", c.Name, err)
	}
	if exit.Code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", exit.Code), Code: exit.Code}
	}
	return nil
}

// AttachToContainer serves `kubectl attach`: the container's main process.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, podName, containerName string, attach api.AttachIO) error {
	w, c, sb, err := p.runningSandbox(namespace, podName, containerName)
	if err != nil {
		return err
	}
	w.mu.Lock()
	procID := processID(c.RestartCount)
	w.mu.Unlock()
	stdio := container.IO{Stdin: attach.Stdin(), Stdout: attach.Stdout(), Stderr: attach.Stderr()}
	if attach.TTY() {
		stdio.Stderr = nil
		stdio.Resize = termSizes(ctx, attach.Resize())
	}
	return sb.Attach(ctx, procID, stdio)
}

func termSizes(ctx context.Context, in <-chan api.TermSize) <-chan container.TermSize {
	if in == nil {
		return nil
	}
	out := make(chan container.TermSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- container.TermSize{Rows: s.Height, Cols: s.Width}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// PortForward connects a `kubectl port-forward` stream to the port inside
// the VM of the container that declares it (else the first container),
// through the agent: it reaches services bound to the VM's localhost too,
// like the kubelet reaching into the pod's network namespace.
func (p *Provider) PortForward(ctx context.Context, namespace, podName string, port int32, stream io.ReadWriteCloser) error {
	w, err := p.worker(namespace, podName)
	if err != nil {
		return err
	}
	pod := w.spec()
	target := ""
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				target = c.Name
			}
		}
	}
	_, _, sb, err := p.runningSandbox(namespace, podName, target)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return errdefs.InvalidInputf("invalid port %d", port)
	}
	return sb.Forward(ctx, uint16(port), stream)
}

// execConfig is a process like the container's main one (environment,
// user, working directory) running args.
func (w *podWorker) execConfig(name string, args []string) container.ProcessConfig {
	w.mu.Lock()
	defer w.mu.Unlock()
	base := w.mainProc[name]
	return container.ProcessConfig{
		Args: args, Env: base.Env, Cwd: base.Cwd, User: base.User, UID: base.UID, GID: base.GID,
		AdditionalGIDs: base.AdditionalGIDs,
	}
}
