package provider

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// processID names instance n of a container's main process.
func processID(restart int32) string { return "main-" + strconv.Itoa(int(restart)) }

// ctrControl lets others interrupt a running container instance: a failed
// liveness probe or a new image kills it and the runner restarts it.
type ctrControl struct {
	restart chan restartRequest
}

type restartRequest struct {
	message   string
	noBackoff bool
}

func (w *podWorker) control(name string) *ctrControl {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.controls == nil {
		w.controls = map[string]*ctrControl{}
	}
	c, ok := w.controls[name]
	if !ok {
		c = &ctrControl{restart: make(chan restartRequest, 1)}
		w.controls[name] = c
	}
	return c
}

func (w *podWorker) restartForImage(name string) {
	select {
	case w.control(name).restart <- restartRequest{message: "Container " + name + " definition changed, will be restarted", noBackoff: true}:
	default:
	}
}

// runContainer drives one container until the pod terminates or its
// restart policy says it is done. started (optional) is closed once the
// container has started, for sidecar init containers.
func (w *podWorker) runContainer(c *ctrState, spec corev1.Container, started chan struct{}) {
	ctx := w.runCtx
	crash := newCrashBackoff(w.p.cfg.BackoffInitial, w.p.cfg.BackoffMax)
	pull := newCrashBackoff(w.p.cfg.BackoffInitial, w.p.cfg.BackoffMax)
	var startedOnce bool
	markStarted := func() {
		if started != nil && !startedOnce {
			startedOnce = true
			close(started)
		}
	}

	// A process that survived a restart of the node: watch it again.
	if exit, ok := w.reattach(ctx, c, spec, markStarted); ok {
		if ctx.Err() != nil || !w.afterExit(ctx, c, exit, crash, false) {
			return
		}
	}

	for ctx.Err() == nil {
		spec = w.currentSpec(c.Name, c.Init, spec)
		img, err := w.pullImage(ctx, c, &spec)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errNeverPull) {
				w.backoffWait(ctx, c, pull.delay(0), reasonErrImageNeverPull, fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image), false)
				continue
			}
			w.eventf(corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", spec.Image)
			w.backoffWait(ctx, c, pull.delay(0), reasonImagePullBackOff, fmt.Sprintf("Back-off pulling image %q: %v", spec.Image, err), false)
			continue
		}
		cfg, _, err := w.plan(ctx, c, &spec, img)
		if err != nil {
			w.failed(c, reasonCreateConfigError, err)
			w.backoffWait(ctx, c, crash.delay(0), reasonCreateConfigError, err.Error(), false)
			continue
		}
		// A configuration error (a missing configMap key, say) must not
		// cost a VM: check the process plan before creating one; the
		// VM's address is filled in below.
		if _, events, err := w.processPlan(c, &spec, img, nil); err != nil {
			for _, e := range events {
				w.event(e.Type, e.Reason, e.Message)
			}
			w.failed(c, reasonCreateConfigError, err)
			w.backoffWait(ctx, c, crash.delay(0), reasonCreateConfigError, err.Error(), false)
			continue
		}
		sb, err := w.ensureSandbox(ctx, c, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.failed(c, reasonCreateError, err)
			w.backoffWait(ctx, c, crash.delay(0), reasonCreateError, err.Error(), false)
			continue
		}
		w.mu.Lock()
		if c.restartPending {
			c.restartPending = false
			c.RestartCount++
		}
		w.mu.Unlock()
		proc, events, err := w.processPlan(c, &spec, img, sb)
		for _, e := range events {
			w.event(e.Type, e.Reason, e.Message)
		}
		if err != nil {
			w.failed(c, reasonCreateConfigError, err)
			w.backoffWait(ctx, c, crash.delay(0), reasonCreateConfigError, err.Error(), false)
			continue
		}
		w.eventf(corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
		w.mu.Lock()
		w.used[c.Name] = true
		w.mainProc[c.Name] = proc
		w.mu.Unlock()
		startedAt, err := sb.Start(ctx, proc)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			exit := startFailure(err)
			w.eventf(corev1.EventTypeWarning, "Failed", "Error: %s", exit.Message)
			w.mu.Lock()
			exit.ContainerID = containerID(sb.ID(), c.RestartCount)
			c.setTerminated(exit)
			w.mu.Unlock()
			w.publish()
			if !w.afterExit(ctx, c, container.ExitStatus{Code: int(exit.ExitCode)}, crash, false) {
				return
			}
			continue
		}
		w.mu.Lock()
		c.setRunning(startedAt)
		w.mu.Unlock()
		w.eventf(corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
		w.publish()
		exit, noBackoff, ok := w.watch(ctx, c, sb, spec, proc.ID, startedAt, markStarted)
		if !ok || ctx.Err() != nil {
			return
		}
		if !w.afterExit(ctx, c, exit, crash, noBackoff) {
			return
		}
	}
}

// afterExit records an exit and decides about a restart, waiting out the
// back-off; it returns false when the container stays terminated.
func (w *podWorker) afterExit(ctx context.Context, c *ctrState, exit container.ExitStatus, crash *crashBackoff, noBackoff bool) bool {
	policy := w.spec().Spec.RestartPolicy
	if c.Sidecar {
		policy = corev1.RestartPolicyAlways
	} else if c.Init && policy == corev1.RestartPolicyAlways {
		policy = corev1.RestartPolicyOnFailure // init containers never restart after success
	}
	restart := policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && exit.Code != 0)
	if !restart {
		return false
	}
	ranFor := exit.FinishedAt.Sub(exit.StartedAt)
	delay := crash.delay(ranFor)
	if noBackoff {
		delay = 0
	}
	w.mu.Lock()
	c.LastState = c.Terminated
	// The count goes up when the next instance starts (as the kubelet's).
	c.restartPending = true
	w.mu.Unlock()
	if delay > 0 {
		w.backoffWait(ctx, c, delay, reasonCrashLoopBackOff,
			fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, c.Name, w.name, w.namespace, w.uid), true)
	}
	return ctx.Err() == nil
}

// backoffWait shows a waiting reason for delay (or until termination).
func (w *podWorker) backoffWait(ctx context.Context, c *ctrState, delay time.Duration, reason, msg string, event bool) {
	w.mu.Lock()
	c.setWaiting(reason, msg)
	w.mu.Unlock()
	w.publish()
	if event {
		w.eventf(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, w.name, w.namespace, w.uid)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// failed reports a container that could not be created.
func (w *podWorker) failed(c *ctrState, reason string, err error) {
	w.eventf(corev1.EventTypeWarning, "Failed", "Error: %v", err)
	w.mu.Lock()
	c.setWaiting(reason, err.Error())
	w.mu.Unlock()
	w.publish()
}

// startFailure turns a failed start into the kubelet's terminated state:
// containerd reports StartError with exit code 128 and the runtime's words;
// exit codes 127/126 keep the shell's meaning in the message.
func startFailure(err error) *corev1.ContainerStateTerminated {
	now := metav1.Now()
	t := &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", StartedAt: now, FinishedAt: now}
	switch {
	case errors.Is(err, container.ErrCommandNotFound):
		t.Message = "failed to create containerd task: exec: " + err.Error()
	case errors.Is(err, container.ErrCommandNotExecutable):
		t.Message = "failed to create containerd task: exec: " + err.Error()
	default:
		t.Message = err.Error()
	}
	return t
}

// watch follows a running instance: postStart hook, probes, and its exit.
// It returns the exit, whether a restart skips the back-off, and false
// when the pod is terminating (the terminator records the exit).
func (w *podWorker) watch(ctx context.Context, c *ctrState, sb Sandbox, spec corev1.Container, procID string, startedAt time.Time, markStarted func()) (container.ExitStatus, bool, bool) {
	instCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctl := w.control(c.Name)
	exitc := make(chan waitResult, 1)
	go func() {
		st, err := sb.Wait(instCtx, procID)
		exitc <- waitResult{st, err}
	}()

	if spec.Lifecycle != nil && spec.Lifecycle.PostStart != nil {
		if err := w.runHook(instCtx, sb, spec, spec.Lifecycle.PostStart); err != nil && instCtx.Err() == nil {
			msg := fmt.Sprintf("PostStartHook failed: %v", err)
			w.eventf(corev1.EventTypeWarning, "FailedPostStartHook", "%s", msg)
			w.kill(instCtx, c, sb, procID, spec, "FailedPostStartHook")
		}
	}
	go w.probe(instCtx, c, sb, spec, markStarted, func(msg string) {
		select {
		case ctl.restart <- restartRequest{message: msg}:
		default:
		}
	})

	noBackoff := false
	for {
		select {
		case r := <-exitc:
			if ctx.Err() != nil {
				return container.ExitStatus{}, false, false
			}
			exit := r.status
			if r.err != nil {
				// The VM went away under the process.
				exit = container.ExitStatus{Code: 137, StartedAt: startedAt, FinishedAt: time.Now()}
				w.log.Warn("container's VM stopped", "container", c.Name, "err", r.err)
			}
			w.recordExit(c, sb, exit, r.err)
			return exit, noBackoff, true
		case req := <-ctl.restart:
			w.eventf(corev1.EventTypeNormal, "Killing", "%s", req.message)
			noBackoff = req.noBackoff
			go w.kill(instCtx, c, sb, procID, spec, req.message)
		}
	}
}

type waitResult struct {
	status container.ExitStatus
	err    error
}

// recordExit sets the terminated state with the kubelet's reason.
func (w *podWorker) recordExit(c *ctrState, sb Sandbox, exit container.ExitStatus, err error) {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    int32(exit.Code),
		Signal:      int32(exit.Signal),
		StartedAt:   metav1.NewTime(exit.StartedAt),
		FinishedAt:  metav1.NewTime(exit.FinishedAt),
		ContainerID: containerID(sb.ID(), c.RestartCount),
	}
	switch {
	case exit.OOMKilled:
		t.Reason = reasonOOMKilled
	case err != nil:
		t.Reason, t.Message = reasonError, "the container's VM stopped: "+err.Error()
	case exit.Code == 0:
		t.Reason = reasonCompleted
	default:
		t.Reason = reasonError
	}
	w.mu.Lock()
	if c.Running != nil && t.StartedAt.IsZero() {
		t.StartedAt = c.Running.StartedAt
	}
	c.setTerminated(t)
	w.mu.Unlock()
	w.publish()
}

// kill stops a running instance: preStop is not run (the kubelet runs it
// only on pod termination and liveness kills), SIGTERM, then SIGKILL after
// the grace period.
func (w *podWorker) kill(ctx context.Context, c *ctrState, sb Sandbox, procID string, spec corev1.Container, why string) {
	grace := 30 * time.Second
	if g := w.spec().Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
		hctx, cancel := context.WithTimeout(ctx, grace)
		if err := w.runHook(hctx, sb, spec, spec.Lifecycle.PreStop); err != nil && hctx.Err() == nil {
			w.eventf(corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
		cancel()
	}
	_ = sb.Signal(ctx, procID, syscall.SIGTERM, true)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return // exited
	case <-t.C:
	}
	_ = sb.Signal(ctx, procID, syscall.SIGKILL, true)
}

// stopContainer ends a container during pod termination and records its
// exit; it is used for every container that has a VM.
func (w *podWorker) stopContainer(ctx context.Context, c *ctrState, sb Sandbox, deadline time.Time, msg string) {
	w.mu.Lock()
	running := c.Running != nil
	restart := c.RestartCount
	w.mu.Unlock()
	if !running {
		return
	}
	w.eventf(corev1.EventTypeNormal, "Killing", "%s", msg)
	spec := findContainer(w.spec(), c.Name)
	procID := processID(restart)
	if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		if err := w.runHook(hctx, sb, *spec, spec.Lifecycle.PreStop); err != nil && hctx.Err() == nil {
			w.eventf(corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
		cancel()
	}
	_ = sb.Signal(ctx, procID, syscall.SIGTERM, true)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	exit, err := sb.Wait(wctx, procID)
	cancel()
	if err != nil {
		_ = sb.Signal(ctx, procID, syscall.SIGKILL, true)
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		exit, err = sb.Wait(kctx, procID)
		cancel()
	}
	if err != nil {
		exit = container.ExitStatus{Code: 137, Signal: int(syscall.SIGKILL), FinishedAt: time.Now()}
	}
	w.recordExit(c, sb, exit, nil)
}

// currentSpec returns the container's spec from the latest pod version.
func (w *podWorker) currentSpec(name string, init bool, fallback corev1.Container) corev1.Container {
	pod := w.spec()
	list := pod.Spec.Containers
	if init {
		list = pod.Spec.InitContainers
	}
	for _, c := range list {
		if c.Name == name {
			return c
		}
	}
	return fallback
}
