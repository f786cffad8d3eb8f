package podworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	"github.com/vk-applevm/vk-applevm/provider/prober"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pull makes the container's image available, with the kubelet's events
// and waiting reasons; on failure it has waited out the pull back-off.
func (c *ctr) pull(ctx context.Context, spec *corev1.Container) (vmruntime.ImageInfo, error) {
	policy := spec.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if ref := spec.Image; !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") || strings.HasSuffix(ref, ":latest") {
			policy = corev1.PullAlways
		}
	}
	start := c.w.cfg.Clock.Now()
	// Pulling when a download really starts, as the kubelet says it.
	pulling := func() { c.w.eventf(corev1.EventTypeNormal, "Pulling", "Pulling image %q", spec.Image) }
	img, err := c.w.cfg.Runtime.EnsureImage(ctx, spec.Image, policy, c.w.pullSecrets(), pulling)
	switch {
	case ctx.Err() != nil:
		return img, ctx.Err()
	case errors.Is(err, vmruntime.ErrNeverPull):
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image)
		c.w.eventf(corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		c.backoffWait(ctx, c.nextBackoff("pull"), ReasonErrImageNeverPull, msg, "")
		return img, err
	case err != nil:
		c.w.eventf(corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", spec.Image, err)
		c.w.eventf(corev1.EventTypeWarning, "Failed", "Error: %s", ReasonErrImagePull)
		c.transition(c.rec.Wait(ReasonErrImagePull, fmt.Sprintf("failed to pull image %q: %v", spec.Image, err)))
		c.w.publish()
		c.w.eventf(corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", spec.Image)
		c.backoffWait(ctx, c.nextBackoff("pull"), ReasonImagePullBackOff, fmt.Sprintf("Back-off pulling image %q: %v", spec.Image, err), "")
		return img, err
	}
	switch {
	case img.Pulled:
		// The kubelet's words (pkg/kubelet/images/image_manager.go).
		c.w.eventf(corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes.",
			spec.Image, img.PullDuration.Truncate(time.Millisecond), c.w.cfg.Clock.Since(start).Truncate(time.Millisecond), img.Size)
	case policy == corev1.PullAlways:
		c.w.eventf(corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q (already up to date)", spec.Image)
	default:
		c.w.eventf(corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", spec.Image)
	}
	c.rec.SetImage(spec.Image, img.ID)
	return img, nil
}

// pullSecrets reads the pod's imagePullSecrets; a missing one is reported
// and skipped, as the kubelet does.
func (w *Worker) pullSecrets() []image.PullSecret {
	pod := w.Pod()
	var out []image.PullSecret
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := w.cfg.Objects.Secret(pod.Namespace, ref.Name)
		if err != nil {
			w.eventf(corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
				"Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name)
			continue
		}
		out = append(out, image.PullSecret{Name: pod.Namespace + "/" + ref.Name,
			DockerConfigJSON: s.Data[corev1.DockerConfigJsonKey], DockerCfg: s.Data[corev1.DockerConfigKey]})
	}
	return out
}

// startFailure turns a failed start into the kubelet's terminated state:
// containerd reports StartError with exit code 128 and the runtime's words.
func startFailure(err error, now time.Time) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", StartedAt: metav1.NewTime(now), FinishedAt: metav1.NewTime(now)}
	switch {
	case errors.Is(err, container.ErrCommandNotFound), errors.Is(err, container.ErrCommandNotExecutable):
		t.Message = "failed to create containerd task: exec: " + err.Error()
	default:
		t.Message = err.Error()
	}
	return t
}

type waitResult struct {
	exit container.ExitStatus
	err  error
}

// watch follows a running instance: its postStart hook, its probes, restart
// requests, and its exit, which it records. It returns stopped when the pod
// is stopping (the stopper records the exit).
func (c *ctr) watch(ctx context.Context, vm vmruntime.VM, instance int32) (outcome, container.ExitStatus, bool) {
	instCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	spec := c.spec()
	procID := processID(instance)
	exitc := make(chan waitResult, 1)
	go func() {
		st, err := vm.Wait(instCtx, procID)
		exitc <- waitResult{st, err}
	}()
	target := execTarget{c: c, vm: vm}
	if spec.Lifecycle != nil && spec.Lifecycle.PostStart != nil {
		if err := prober.RunHook(instCtx, c.w.cfg.Clock, target, spec, spec.Lifecycle.PostStart); err != nil && instCtx.Err() == nil {
			c.w.eventf(corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			go c.kill(instCtx, vm, spec, procID)
		}
	}
	c.w.prober.Add(instance, spec, target)
	defer c.w.prober.Remove(c.rec.Name())

	noBackoff := false
	for {
		select {
		case r := <-exitc:
			if ctx.Err() != nil {
				return stopped, container.ExitStatus{}, false
			}
			exit := c.recordExit(ctx, vm, spec, instance, r)
			return exited, exit, noBackoff
		case req := <-c.restartc:
			c.w.eventf(corev1.EventTypeNormal, "Killing", "%s", req.message)
			noBackoff = req.noBackoff
			go c.kill(instCtx, vm, spec, procID)
		}
	}
}

// recordExit records how an instance ended, with the kubelet's reason and
// termination message.
func (c *ctr) recordExit(ctx context.Context, vm vmruntime.VM, spec corev1.Container, instance int32, r waitResult) container.ExitStatus {
	exit := r.exit
	now := c.w.cfg.Clock.Now()
	if r.err != nil {
		exit = container.ExitStatus{Code: 137, FinishedAt: now}
	}
	t := &corev1.ContainerStateTerminated{
		ExitCode:   int32(exit.Code),
		Signal:     int32(exit.Signal),
		StartedAt:  metav1.NewTime(exit.StartedAt),
		FinishedAt: metav1.NewTime(exit.FinishedAt),
	}
	switch {
	case r.err != nil && isGone(r.err):
		// The agent does not know the process (it was re-attached after a
		// restart of the node and is gone): the kubelet's word for it.
		t.Reason, t.Message = ctrstate.ReasonStatusUnknown, "The container could not be located: "+r.err.Error()
		c.w.log.Warn("container's process is gone", "container", c.rec.Name(), "err", r.err)
	case r.err != nil:
		t.Reason, t.Message = ctrstate.ReasonError, "the container's VM stopped: "+r.err.Error()
		c.w.log.Warn("container's VM stopped", "container", c.rec.Name(), "err", r.err)
	case exit.OOMKilled:
		t.Reason = ctrstate.ReasonOOMKilled
	case exit.Code == 0:
		t.Reason = ctrstate.ReasonCompleted
	default:
		t.Reason = ctrstate.ReasonError
	}
	if r.err == nil {
		if msg := c.terminationMessage(ctx, vm, spec, t, instance); msg != "" {
			if t.Message != "" {
				t.Message += ": "
			}
			t.Message += msg
		}
	}
	c.transition(c.rec.Exit(t))
	c.w.publish()
	if exit.StartedAt.IsZero() {
		exit.StartedAt = t.StartedAt.Time
	}
	return exit
}

// The kubelet's bounds on termination messages
// (pkg/kubelet/container/runtime.go).
const (
	maxMessageBytes    = 4 << 10 // of the file, from its end
	maxLogMessageBytes = 2 << 10 // of the log, from its end
	maxLogMessageLines = 80
)

// terminationMessage reads what the container left at its
// terminationMessagePath, or, with FallbackToLogsOnError and a failure, the
// end of its log, as kuberuntime's getTerminationMessage does. The file is
// read from the container's root in the VM, after the process exited and
// before the writable layer is reset.
func (c *ctr) terminationMessage(ctx context.Context, vm vmruntime.VM, spec corev1.Container, t *corev1.ContainerStateTerminated, instance int32) string {
	fallback := spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && t.ExitCode != 0
	if path := spec.TerminationMessagePath; path != "" {
		rctx, cancel := withTimeout(ctx, c.w.cfg.Clock, 10*time.Second)
		data, err := vm.ReadFile(rctx, path, maxMessageBytes)
		cancel()
		switch {
		case err == nil && len(data) > 0:
			return string(data)
		case err != nil && !isGone(err):
			return fmt.Sprintf("Error on reading termination log %s: %v", path, err)
		}
	}
	if !fallback {
		return ""
	}
	var buf bytes.Buffer
	err := crilog.Read(ctx, c.w.LogDir(c.rec.Name()), strconv.Itoa(int(instance)), &buf, crilog.Options{Tail: maxLogMessageLines})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("Error on reading termination message from logs: %v", err)
	}
	b := buf.Bytes()
	if len(b) > maxLogMessageBytes {
		b = b[len(b)-maxLogMessageBytes:]
	}
	return string(b)
}

// gracePeriod is the pod's terminationGracePeriodSeconds (default 30 s).
func (w *Worker) gracePeriod() time.Duration {
	if g := w.Pod().Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// kill stops a running instance to restart it: preStop, SIGTERM, then
// SIGKILL after the grace period. ctx ends when the instance has exited.
func (c *ctr) kill(ctx context.Context, vm vmruntime.VM, spec corev1.Container, procID string) {
	grace := c.w.gracePeriod()
	deadline := c.w.cfg.Clock.Now().Add(grace)
	c.preStop(ctx, vm, spec, deadline)
	c.signal(ctx, vm, procID, syscall.SIGTERM)
	t := c.w.cfg.Clock.NewTimer(until(c.w.cfg.Clock, deadline))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return // exited
	case <-t.C():
	}
	c.signal(ctx, vm, procID, syscall.SIGKILL)
}

func (c *ctr) preStop(ctx context.Context, vm vmruntime.VM, spec corev1.Container, deadline time.Time) {
	if spec.Lifecycle == nil || spec.Lifecycle.PreStop == nil {
		return
	}
	hctx, cancel := withTimeout(ctx, c.w.cfg.Clock, until(c.w.cfg.Clock, deadline))
	defer cancel()
	if err := prober.RunHook(hctx, c.w.cfg.Clock, execTarget{c: c, vm: vm}, spec, spec.Lifecycle.PreStop); err != nil && hctx.Err() == nil {
		c.w.eventf(corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
	}
}

// killWait is how long a SIGKILLed process gets to be reported gone.
const killWait = 5 * time.Second

// stop ends the container when its pod stops and records its exit: the
// preStop hook, SIGTERM, SIGKILL at deadline.
func (c *ctr) stop(ctx context.Context, deadline time.Time, msg string) {
	snap := c.rec.Snapshot()
	vm := c.currentVM()
	if snap.State != ctrstate.Running || vm == nil {
		return
	}
	c.w.eventf(corev1.EventTypeNormal, "Killing", "%s", msg)
	spec := c.spec()
	procID := processID(snap.Instance)
	c.preStop(ctx, vm, spec, deadline)
	c.signal(ctx, vm, procID, syscall.SIGTERM)
	r := c.waitUntil(ctx, vm, procID, deadline)
	if r.err != nil {
		c.w.log.Info("container did not stop within its grace period; killing it", "container", c.rec.Name(), "err", r.err)
		c.signal(ctx, vm, procID, syscall.SIGKILL)
		r = c.waitUntil(ctx, vm, procID, c.w.cfg.Clock.Now().Add(killWait))
	}
	if r.err != nil {
		c.w.log.Warn("container's exit not seen after SIGKILL", "container", c.rec.Name(), "err", r.err)
		r = waitResult{exit: container.ExitStatus{Code: 137, Signal: int(syscall.SIGKILL), FinishedAt: c.w.cfg.Clock.Now()}}
	}
	c.recordExit(ctx, vm, spec, snap.Instance, r)
}

// signalTimeout bounds one signal call to the guest.
const signalTimeout = 10 * time.Second

// signal sends sig to every process of the container; a failure is logged
// (the wait that follows decides what happened).
func (c *ctr) signal(ctx context.Context, vm vmruntime.VM, procID string, sig syscall.Signal) {
	sctx, cancel := withTimeout(ctx, c.w.cfg.Clock, signalTimeout)
	defer cancel()
	if err := vm.Signal(sctx, procID, sig, true); err != nil {
		c.w.log.Warn("signal container", "container", c.rec.Name(), "signal", sig, "err", err)
	}
}

// waitUntil waits for a process's exit until deadline on the clock.
func (c *ctr) waitUntil(ctx context.Context, vm vmruntime.VM, procID string, deadline time.Time) waitResult {
	wctx, cancel := withTimeout(ctx, c.w.cfg.Clock, until(c.w.cfg.Clock, deadline))
	defer cancel()
	st, err := vm.Wait(wctx, procID)
	return waitResult{st, err}
}

// reattach claims the container's VM from an earlier run of the node. It
// returns the VM when the container was running there and is watched
// again; its process may have ended meanwhile, which the watch records.
func (c *ctr) reattach(ctx context.Context) (vmruntime.VM, bool) {
	c.mu.Lock()
	vm := c.adopted
	c.adopted = nil
	c.mu.Unlock()
	unknown := c.rec.Snapshot().State == ctrstate.Unknown
	if vm == nil || !vm.Running(ctx) {
		if vm != nil {
			if err := vm.Delete(ctx); err != nil && !isGone(err) {
				c.w.log.Error("delete a stopped VM from an earlier run", "vm", vm.ID(), "err", err)
			}
		}
		if unknown { // the status said running but the VM is gone
			c.transition(c.rec.Wait(ctrstate.ReasonContainerCreating, ""))
		}
		return nil, false
	}
	c.mu.Lock()
	c.vm, c.used = vm, true
	c.mu.Unlock()
	c.w.vmCreated(c, vm)
	if !unknown {
		return nil, false // the VM is reused (reset) for the next start
	}
	c.transition(c.rec.Reattach(vm.ID()))
	c.w.log.Info("re-attached to a running container", "container", c.rec.Name(), "vm", vm.ID())
	c.w.publish()
	return vm, true
}

var execSeq atomic.Uint64

// ExecConfig is a process like the container's main one (environment,
// user, working directory) running args.
func (c *ctr) execConfig(args []string, idPrefix string) container.ProcessConfig {
	base := c.mainProcess()
	return container.ProcessConfig{
		ID:   fmt.Sprintf("%s-%d", idPrefix, execSeq.Add(1)),
		Args: args, Env: base.Env, Cwd: base.Cwd, User: base.User, UID: base.UID, GID: base.GID,
		AdditionalGIDs: base.AdditionalGIDs,
	}
}

// execTarget is a container instance as probes and hooks see it.
type execTarget struct {
	c  *ctr
	vm vmruntime.VM
}

// probeOutputBytes is how much of a probe's output its failure message
// keeps.
const probeOutputBytes = 10 << 10

func (t execTarget) Exec(ctx context.Context, args []string) (int, []byte, error) {
	var out bytes.Buffer
	lim := &prober.Limited{W: &out, N: probeOutputBytes}
	exit, err := t.vm.Exec(ctx, t.c.execConfig(args, "probe"), container.IO{Stdout: lim, Stderr: lim})
	return exit.Code, out.Bytes(), err
}

func (t execTarget) Address() string { return t.c.w.address(t.vm) }

// DialContext reaches the pod's address through the pod network, as a
// kubelet's probe reaches a pod from the node.
func (t execTarget) DialContext(ctx context.Context, netw, addr string) (net.Conn, error) {
	return t.c.w.dialer()(ctx, netw, addr)
}

// probeResult applies what a probe worker found.
func (w *Worker) probeResult(r prober.Result) {
	c := w.ctr(r.Container)
	if c == nil {
		return
	}
	var changed bool
	var err error
	switch {
	case r.Kind == prober.Startup && r.Success:
		changed, err = c.rec.SetStarted(r.Instance)
		if err == nil {
			c.markStarted()
		}
	case r.Kind == prober.Readiness:
		changed, err = c.rec.SetReady(r.Instance, r.Success)
	case !r.Success: // startup or liveness gave up on the container
		c.requestRestart(r.Message, false)
	}
	if errors.Is(err, ctrstate.ErrInvalidTransition) {
		return // a result for an instance that is gone
	}
	if changed {
		w.publish()
	}
}
