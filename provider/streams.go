package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	utilexec "k8s.io/utils/exec"
)

// GetContainerLogs serves `kubectl logs` from the log files the VM's shim
// writes on the host, so logs outlive the VM and survive node restarts.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	w, err := p.worker(namespace, podName)
	if err != nil {
		return nil, err
	}
	c, ok := w.Container(containerName)
	if !ok {
		return nil, errdefs.NotFoundf("container %q is not in pod %s/%s", containerName, namespace, podName)
	}
	running := c.State == ctrstate.Running || c.State == ctrstate.Unknown
	instance := c.Instance
	if opts.Previous {
		if !c.HasRun || instance == 0 {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", containerName, podName)
		}
		instance--
	}
	dir := w.LogDir(containerName)
	name := strconv.Itoa(int(instance))
	ro := crilog.Options{Tail: -1, Timestamps: opts.Timestamps, LimitBytes: int64(opts.LimitBytes), Follow: opts.Follow && !opts.Previous}
	if opts.Tail > 0 {
		ro.Tail = opts.Tail
	}
	switch {
	case !opts.SinceTime.IsZero():
		ro.Since = opts.SinceTime
	case opts.SinceSeconds > 0:
		ro.Since = p.cfg.Clock.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	if ro.Follow {
		ro.Running = func() bool { return w.ContainerRunning(containerName, instance) }
	}
	if !running && !c.HasRun && !opts.Follow {
		// Never started: say why rather than returning nothing.
		if _, err := crilog.Segments(dir, name); err != nil {
			return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start: %s", containerName, podName, waitingReason(c))
		}
	}
	pr, pw := io.Pipe()
	go func() {
		err := crilog.Read(ctx, dir, name, pw, ro)
		if errors.Is(err, os.ErrNotExist) && (running || c.HasRun) {
			err = nil // started, has written nothing yet
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

func waitingReason(c ctrstate.Snapshot) string {
	if w := c.Status.State.Waiting; w != nil && w.Reason != "" {
		return w.Reason
	}
	return ctrstate.ReasonContainerCreating
}

// runningVM finds the VM of a running container ("" names the first app
// container).
func (p *Provider) runningVM(namespace, podName, containerName string) (*podworker.Worker, ctrstate.Snapshot, vmruntime.VM, error) {
	w, err := p.worker(namespace, podName)
	if err != nil {
		return nil, ctrstate.Snapshot{}, nil, err
	}
	if containerName == "" {
		containerName = w.FirstApp()
	}
	if _, ok := w.Container(containerName); !ok {
		return nil, ctrstate.Snapshot{}, nil, errdefs.NotFoundf("container %q is not in pod %s/%s", containerName, namespace, podName)
	}
	vm, c, ok := w.RunningVM(containerName)
	if !ok {
		return nil, ctrstate.Snapshot{}, nil, errdefs.InvalidInputf("container %q in pod %s/%s is not running", containerName, namespace, podName)
	}
	return w, c, vm, nil
}

// RunInContainer serves `kubectl exec`: a new process in the container's
// VM with the container's environment and identity. A non-zero exit is
// returned as an exec.ExitError so the client gets the code.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	w, c, vm, err := p.runningVM(namespace, podName, containerName)
	if err != nil {
		return err
	}
	proc := w.ExecConfig(c.Name, cmd)
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
		sizes := termSizes(ctx, attach.Resize())
		if first, ok := p.initialSize(ctx, sizes); ok {
			proc.Rows, proc.Cols = first.Rows, first.Cols
		}
		stdio.Resize = sizes
	}
	exit, err := vm.Exec(ctx, proc, stdio)
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
	_, c, vm, err := p.runningVM(namespace, podName, containerName)
	if err != nil {
		return err
	}
	procID := podworker.MainProcessID(c.Instance)
	stdio := container.IO{Stdin: attach.Stdin(), Stdout: attach.Stdout(), Stderr: attach.Stderr()}
	if attach.TTY() {
		stdio.Stderr = nil
		stdio.Resize = termSizes(ctx, attach.Resize())
	}
	return vm.Attach(ctx, procID, stdio)
}

// initialSizeWait bounds how long a TTY exec waits for the client's
// terminal size before starting without one.
const initialSizeWait = time.Second

// initialSize takes the first terminal size from sizes: kubectl sends it
// on the resize stream right after the streams open, which is after the
// exec request. A process started before it arrives sees a 0×0 terminal
// (`stty size` fails, full-screen programs draw nothing), so a TTY exec
// waits for it, briefly: a client that never sends one still gets its
// process.
func (p *Provider) initialSize(ctx context.Context, sizes <-chan container.TermSize) (container.TermSize, bool) {
	if sizes == nil {
		return container.TermSize{}, false
	}
	select {
	case s, ok := <-sizes:
		return s, ok
	case <-p.cfg.Clock.After(initialSizeWait):
	case <-ctx.Done():
	}
	return container.TermSize{}, false
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
	if port <= 0 || port > 65535 {
		return errdefs.InvalidInputf("invalid port %d", port)
	}
	// The container that serves the port, chosen as the pod network
	// chooses it for the pod's address; else the first container.
	target := w.ServingContainer(uint16(port))
	_, _, vm, err := p.runningVM(namespace, podName, target)
	if err != nil {
		return err
	}
	return vm.Forward(ctx, uint16(port), stream)
}
