package podworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// Waiting reasons the kubelet gives containers.
const (
	ReasonErrImagePull      = "ErrImagePull"
	ReasonImagePullBackOff  = "ImagePullBackOff"
	ReasonErrImageNeverPull = "ErrImageNeverPull"
	ReasonCrashLoopBackOff  = "CrashLoopBackOff"
	ReasonCreateConfigError = "CreateContainerConfigError"
	ReasonCreateError       = "CreateContainerError"
)

// ctr runs one container of the pod: it owns the container's record, its
// VM and the template of its processes.
type ctr struct {
	w        *Worker
	rec      *ctrstate.Record
	restartc chan restartRequest
	// startedc is closed once the container has started (a sidecar's
	// startup probe passed): the next init container may run.
	startedc    chan struct{}
	startedOnce sync.Once

	mu      sync.Mutex
	vm      vmruntime.VM
	adopted vmruntime.VM // from an earlier run of the node, until claimed
	// used: a process has run in vm; the next start needs a fresh
	// writable layer.
	used bool
	// main is the current main process: the template for exec and probes.
	main container.ProcessConfig
}

// restartRequest asks for the running instance to be killed and restarted:
// a failed liveness or startup probe, a failed postStart hook, a new image.
type restartRequest struct {
	message   string
	noBackoff bool
}

func newCtr(w *Worker, rec *ctrstate.Record, adopted vmruntime.VM) *ctr {
	return &ctr{w: w, rec: rec, adopted: adopted, restartc: make(chan restartRequest, 1), startedc: make(chan struct{})}
}

// spec is the container's spec in the latest version of the pod.
func (c *ctr) spec() corev1.Container {
	pod := c.w.Pod()
	list := pod.Spec.Containers
	if c.rec.Init() {
		list = pod.Spec.InitContainers
	}
	for _, s := range list {
		if s.Name == c.rec.Name() {
			return s
		}
	}
	return corev1.Container{Name: c.rec.Name()}
}

func (c *ctr) currentVM() vmruntime.VM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vm
}

func (c *ctr) adoptedVM() vmruntime.VM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adopted
}

func (c *ctr) hasVM() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vm != nil || c.adopted != nil
}

// mainProcess is the current main process.
func (c *ctr) mainProcess() container.ProcessConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.main
}

func (c *ctr) requestRestart(message string, noBackoff bool) {
	select {
	case c.restartc <- restartRequest{message: message, noBackoff: noBackoff}:
	default:
	}
}

func (c *ctr) markStarted() {
	c.startedOnce.Do(func() { close(c.startedc) })
}

// outcome is how one attempt to run an instance ended.
type outcome int

const (
	retry   outcome = iota // not started; the back-off has been waited
	exited                 // the instance ran (or failed to start) and ended
	stopped                // the pod is stopping; whoever stops it records the exit
)

// run drives the container until the pod stops or its restart policy says
// it is done.
func (c *ctr) run(ctx context.Context) {
	if vm, ok := c.reattach(ctx); ok {
		if o, exit, noBackoff := c.watch(ctx, vm, c.rec.Snapshot().Instance); o != exited || !c.afterExit(ctx, exit, noBackoff) {
			return
		}
	}
	for ctx.Err() == nil {
		o, exit, noBackoff := c.startOnce(ctx)
		switch o {
		case stopped:
			return
		case exited:
			if !c.afterExit(ctx, exit, noBackoff) {
				return
			}
		}
	}
}

// startOnce pulls, plans, creates or resets the VM, starts the next
// instance and watches it to its end.
func (c *ctr) startOnce(ctx context.Context) (outcome, container.ExitStatus, bool) {
	if c.rec.Snapshot().State == ctrstate.Exited {
		// A restart without back-off: the exit becomes the last state.
		c.transition(c.rec.Wait(ctrstate.ReasonContainerCreating, ""))
	}
	spec := c.spec()
	img, err := c.pull(ctx, &spec)
	if err != nil {
		if ctx.Err() != nil {
			return stopped, container.ExitStatus{}, false
		}
		return retry, container.ExitStatus{}, false
	}
	instance := c.rec.Instance()
	plan, err := c.w.plan(ctx, &spec, img, instance)
	if err != nil {
		c.recordEvents(plan.Events)
		c.failed(ctx, ReasonCreateConfigError, err)
		return retry, container.ExitStatus{}, false
	}
	vm, err := c.ensureVM(ctx, plan.VM)
	if err != nil {
		if ctx.Err() != nil {
			return stopped, container.ExitStatus{}, false
		}
		c.failed(ctx, ReasonCreateError, err)
		return retry, container.ExitStatus{}, false
	}
	proc := plan.bind(c.w.address(vm))
	c.recordEvents(plan.Events)
	c.w.eventf(corev1.EventTypeNormal, "Created", "Created container %s", c.rec.Name())
	c.mu.Lock()
	c.used, c.main = true, proc
	c.mu.Unlock()
	startedAt, err := vm.Start(ctx, proc)
	if err != nil {
		if ctx.Err() != nil {
			return stopped, container.ExitStatus{}, false
		}
		t := startFailure(err, c.w.cfg.Clock.Now())
		c.w.eventf(corev1.EventTypeWarning, "Failed", "Error: %s", t.Message)
		c.transition(c.rec.FailStart(vm.ID(), t))
		c.w.publish()
		return exited, container.ExitStatus{Code: int(t.ExitCode), StartedAt: t.StartedAt.Time, FinishedAt: t.FinishedAt.Time}, false
	}
	c.transition(c.rec.Start(instance, vm.ID(), startedAt))
	c.w.eventf(corev1.EventTypeNormal, "Started", "Started container %s", c.rec.Name())
	c.w.publish()
	return c.watch(ctx, vm, instance)
}

func (c *ctr) recordEvents(events []env.Event) {
	for _, e := range events {
		c.w.event(e.Type, e.Reason, e.Message)
	}
}

// transition logs a refused transition: the worker lost track of the
// container, which is a bug to see, not to hide.
func (c *ctr) transition(err error) {
	if err != nil {
		c.w.log.Error("container state", "container", c.rec.Name(), "err", err)
	}
}

// afterExit decides about a restart and waits out the back-off; it
// returns false when the container stays exited.
func (c *ctr) afterExit(ctx context.Context, exit container.ExitStatus, noBackoff bool) bool {
	policy := c.w.Pod().Spec.RestartPolicy
	switch {
	case c.rec.Sidecar():
		policy = corev1.RestartPolicyAlways
	case c.rec.Init() && policy == corev1.RestartPolicyAlways:
		policy = corev1.RestartPolicyOnFailure // init containers never restart after success
	}
	if policy != corev1.RestartPolicyAlways && (policy != corev1.RestartPolicyOnFailure || exit.Code == 0) {
		return false
	}
	if noBackoff {
		return ctx.Err() == nil
	}
	delay := c.nextBackoff("crash")
	name, w := c.rec.Name(), c.w
	c.backoffWait(ctx, delay, ReasonCrashLoopBackOff,
		fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, name, w.name, w.namespace, w.uid),
		fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", name, w.name, w.namespace, w.uid))
	return ctx.Err() == nil
}

// nextBackoff moves the container's back-off of a kind (crash, pull) to
// its next step and returns it: the kubelet's flowcontrol.Backoff, which
// starts over once the container went twice the maximum without one.
func (c *ctr) nextBackoff(kind string) time.Duration {
	key := kind + "/" + c.rec.Name()
	c.w.backoff.Next(key, c.w.cfg.Clock.Now())
	return c.w.backoff.Get(key)
}

// backoffWait shows a waiting reason for delay (or until the pod stops).
// The timer starts before the status says so: whoever sees the back-off
// in the status may count on its clock running.
func (c *ctr) backoffWait(ctx context.Context, delay time.Duration, reason, msg, event string) {
	t := c.w.cfg.Clock.NewTimer(delay)
	defer t.Stop()
	c.transition(c.rec.Wait(reason, msg))
	c.w.publish()
	if event != "" {
		c.w.event(corev1.EventTypeWarning, "BackOff", event)
	}
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

// failed reports a container that could not be created and backs off.
func (c *ctr) failed(ctx context.Context, reason string, err error) {
	c.w.eventf(corev1.EventTypeWarning, "Failed", "Error: %v", err)
	c.backoffWait(ctx, c.nextBackoff("crash"), reason, err.Error(), "")
}

// ensureVM returns the container's VM, creating it on first use and
// giving it a fresh writable layer before a restart.
func (c *ctr) ensureVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	c.mu.Lock()
	vm, used := c.vm, c.used
	c.mu.Unlock()
	if vm != nil && !vm.Running(ctx) {
		c.w.log.Warn("container's VM is not running; creating it again", "container", c.rec.Name(), "vm", vm.ID())
		c.deleteVM(ctx)
		vm = nil
	}
	if vm == nil {
		vm, err := c.w.cfg.Runtime.CreateVM(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("create VM: %w", err)
		}
		c.w.volumes.Remember(c.rec.Name(), cfg.Mounts)
		c.mu.Lock()
		c.vm, c.used = vm, false
		c.mu.Unlock()
		c.w.vmCreated(c, vm)
		return vm, nil
	}
	if used {
		if err := vm.Reset(ctx); err != nil {
			return nil, fmt.Errorf("reset the writable layer: %w", err)
		}
		// The reset VM has the volume content it was created with.
		c.w.volumes.Forget(c.rec.Name())
		c.w.volumes.Kick()
	}
	return vm, nil
}

// deleteVM deletes the container's VM, if it has one.
func (c *ctr) deleteVM(ctx context.Context) {
	c.mu.Lock()
	vm := c.vm
	c.vm = nil
	c.mu.Unlock()
	if vm == nil {
		return
	}
	c.w.ports.forget(c.rec.Name())
	if err := vm.Delete(ctx); err != nil && !isGone(err) {
		c.w.log.Error("delete VM", "container", c.rec.Name(), "vm", vm.ID(), "err", err)
	}
}

// deleteAdopted deletes a VM from an earlier run that was not claimed.
func (c *ctr) deleteAdopted(ctx context.Context) {
	c.mu.Lock()
	vm := c.adopted
	c.adopted = nil
	c.mu.Unlock()
	if vm == nil {
		return
	}
	if err := vm.Delete(ctx); err != nil && !isGone(err) {
		c.w.log.Error("delete leftover VM", "container", c.rec.Name(), "vm", vm.ID(), "err", err)
	}
}
