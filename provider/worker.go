package provider

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podWorker owns one pod: it runs the init containers in order, then a
// runner per app container, and terminates the pod when asked.
type podWorker struct {
	p               *Provider
	namespace, name string
	uid             types.UID
	log             *slog.Logger
	cost            podCost
	rejected        *rejection

	// runCtx ends when termination starts: runners stop restarting.
	runCtx    context.Context
	stopRuns  context.CancelFunc
	termOnce  sync.Once
	termGrace chan time.Duration // receives the grace period once
	done      chan struct{}      // closed when the worker has finished

	pubMu     sync.Mutex // serialises publish
	mu        sync.Mutex
	pod       *corev1.Pod
	inits     []*ctrState
	apps      []*ctrState
	sandboxes map[string]Sandbox // by container name
	meta      podMeta
	finished  bool // terminal: VMs deleted
	// terminating: DeletePod was called.
	terminating bool
	// adopted are VMs from an earlier run of the node, by container name.
	adopted map[string]Sandbox
	// used marks VMs a process has run in: the next start needs a fresh
	// writable layer.
	used     map[string]bool
	controls map[string]*ctrControl
	// mainProc is each container's main process, the template for exec.
	mainProc map[string]container.ProcessConfig
	volumes  *volumeManager
}

func newPodWorker(p *Provider, pod *corev1.Pod, adopted []Sandbox) *podWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &podWorker{
		p: p, namespace: pod.Namespace, name: pod.Name, uid: pod.UID,
		log:       p.log.With("pod", pod.Namespace+"/"+pod.Name),
		runCtx:    ctx,
		stopRuns:  cancel,
		termGrace: make(chan time.Duration, 1),
		done:      make(chan struct{}),
		pod:       pod,
		sandboxes: map[string]Sandbox{},
		adopted:   map[string]Sandbox{},
		used:      map[string]bool{},
		mainProc:  map[string]container.ProcessConfig{},
	}
	for _, sb := range adopted {
		w.adopted[sb.Labels()[labelContainer]] = sb
	}
	w.meta.hostIP = p.cfg.NodeIP
	w.cost = p.sizing.costOf(pod, p.cfg.VMOverheadBytes)
	w.inits, w.apps = initialStates(pod)
	w.volumes = newVolumeManager(w)
	return w
}

// initialStates builds container records, taking restart counts and last
// states from the pod's status so a restarted node continues counting.
func initialStates(pod *corev1.Pod) (inits, apps []*ctrState) {
	prev := map[string]corev1.ContainerStatus{}
	for _, s := range pod.Status.InitContainerStatuses {
		prev["init/"+s.Name] = s
	}
	for _, s := range pod.Status.ContainerStatuses {
		prev["app/"+s.Name] = s
	}
	mk := func(c *corev1.Container, init bool) *ctrState {
		st := &ctrState{Name: c.Name, Init: init, Image: c.Image,
			Sidecar: init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways}
		st.setWaiting(reasonContainerCreating, "")
		if init {
			st.Waiting.Reason = reasonPodInitializing
		}
		kind := "app/"
		if init {
			kind = "init/"
		}
		if s, ok := prev[kind+c.Name]; ok {
			st.RestartCount = s.RestartCount
			st.LastState = s.LastTerminationState.Terminated
			st.ImageID = s.ImageID
			if t := s.State.Terminated; t != nil && init && !st.Sidecar && t.ExitCode == 0 {
				st.setTerminated(t.DeepCopy()) // init already done
			}
			if r := s.State.Running; r != nil {
				st.Running = r.DeepCopy() // a candidate for re-attachment
				st.Waiting = nil
			}
		}
		return st
	}
	for i := range pod.Spec.InitContainers {
		inits = append(inits, mk(&pod.Spec.InitContainers[i], true))
	}
	for i := range pod.Spec.Containers {
		apps = append(apps, mk(&pod.Spec.Containers[i], false))
	}
	return inits, apps
}

func (w *podWorker) start() {
	go w.run()
}

func (w *podWorker) run() {
	defer close(w.done)
	defer w.p.removeWorkerLater(w)
	if w.rejected != nil {
		w.event(corev1.EventTypeWarning, w.rejected.Reason, w.rejected.Message)
		w.mu.Lock()
		w.meta.phase, w.meta.reason, w.meta.message = corev1.PodFailed, w.rejected.Reason, w.rejected.Message
		for _, c := range append(append([]*ctrState{}, w.inits...), w.apps...) {
			c.setWaiting(w.rejected.Reason, w.rejected.Message)
		}
		w.finished = true
		w.mu.Unlock()
		w.publish()
		w.deleteLeftovers()
		return
	}
	w.mu.Lock()
	w.meta.startTime = w.p.now()
	if st := w.pod.Status.StartTime; st != nil {
		w.meta.startTime = st.Time
	}
	w.mu.Unlock()
	w.publish()

	go w.volumes.run(w.runCtx)
	if ok := w.runInits(); ok {
		w.runApps()
	}
	// The pod has ended on its own (all containers done, no restarts) or
	// termination was requested; either way wait for the deletion
	// request, then clean up.
	grace := w.waitTermination()
	w.shutdown(grace)
}

// removeWorkerLater drops the worker from the provider once Kubernetes has
// had time to see the terminal status; keeping it a little longer lets
// GetPod answer virtual-kubelet's last status sync.
func (p *Provider) removeWorkerLater(w *podWorker) {
	time.AfterFunc(30*time.Second, func() { p.removeWorker(w) })
}

// runInits runs the init containers in order; it returns false when the
// pod cannot proceed (a failed init container under restartPolicy Never,
// or termination).
func (w *podWorker) runInits() bool {
	for i, c := range w.inits {
		spec := w.spec().Spec.InitContainers[i]
		if c.succeeded() {
			// Done in an earlier run of the node; its VM, if any, is not
			// needed.
			w.mu.Lock()
			sb := w.adopted[c.Name]
			delete(w.adopted, c.Name)
			w.mu.Unlock()
			if sb != nil {
				_ = sb.Delete(w.runCtx)
			}
			continue
		}
		if c.Sidecar {
			started := make(chan struct{})
			go w.runContainer(c, spec, started)
			select {
			case <-started:
			case <-w.runCtx.Done():
				return false
			}
			continue
		}
		w.runContainer(c, spec, nil)
		w.mu.Lock()
		ok := c.succeeded()
		w.mu.Unlock()
		if !ok {
			return false
		}
		// A finished init container's VM is not needed any more; its logs
		// stay on the host.
		w.deleteSandbox(c.Name)
	}
	return w.runCtx.Err() == nil
}

func (w *podWorker) runApps() {
	var wg sync.WaitGroup
	for i, c := range w.apps {
		spec := w.spec().Spec.Containers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runContainer(c, spec, nil)
		}()
	}
	wg.Wait()
}

// waitTermination blocks until DeletePod (or an internal end) asks the pod
// to stop, and returns the grace period.
func (w *podWorker) waitTermination() time.Duration {
	w.mu.Lock()
	ended := w.phaseLocked() == corev1.PodSucceeded || w.phaseLocked() == corev1.PodFailed
	w.mu.Unlock()
	if ended {
		// Nothing runs any more: free the VMs now, keep the pod's status
		// until Kubernetes deletes it.
		w.deleteAllSandboxes(context.Background())
		w.mu.Lock()
		w.finished = true
		w.mu.Unlock()
		w.publish()
	}
	return <-w.termGrace
}

// terminate starts termination with the given grace period. Later calls
// (DeletePod may be called again) are ignored.
func (w *podWorker) terminate(grace time.Duration, deleted *corev1.Pod) {
	w.termOnce.Do(func() {
		w.mu.Lock()
		w.terminating = true
		if deleted != nil {
			w.pod.DeletionTimestamp = deleted.DeletionTimestamp
			w.pod.DeletionGracePeriodSeconds = deleted.DeletionGracePeriodSeconds
		}
		w.mu.Unlock()
		w.termGrace <- grace
		w.stopRuns()
	})
}

func (w *podWorker) phaseLocked() corev1.PodPhase {
	if w.meta.phase != "" {
		return w.meta.phase
	}
	return podPhase(w.pod.Spec.RestartPolicy, w.inits, w.apps)
}

// shutdown stops every container within grace, deletes the VMs and reports
// the terminal status virtual-kubelet waits for.
func (w *podWorker) shutdown(grace time.Duration) {
	deadline := time.Now().Add(grace)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(30*time.Second))
	defer cancel()
	w.mu.Lock()
	all := append(append([]*ctrState{}, w.inits...), w.apps...)
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		sb := w.sandbox(c.Name)
		if sb == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopContainer(ctx, c, sb, deadline, "Stopping container "+c.Name)
		}()
	}
	wg.Wait()
	w.deleteAllSandboxes(ctx)

	w.mu.Lock()
	now := metav1.NewTime(w.p.now())
	succeeded := true
	for _, c := range all {
		if c.Terminated == nil {
			c.setTerminated(&corev1.ContainerStateTerminated{ExitCode: 137, Reason: reasonContainerStatusLost,
				Message: "The container could not be located when the pod was terminated", FinishedAt: now})
		}
		if !c.Init && c.Terminated.ExitCode != 0 {
			succeeded = false
		}
	}
	if w.meta.phase == "" {
		w.meta.phase = corev1.PodFailed
		if succeeded {
			w.meta.phase = corev1.PodSucceeded
		}
	}
	w.finished = true
	w.mu.Unlock()
	w.publish()
	w.finalDelete()
}

// finalDelete removes the pod object once its containers are gone, as the
// kubelet's status manager does (grace 0, UID precondition). Without it
// virtual-kubelet v1.14.1 deletes the object only when the grace period has
// run out: a status-only update does not requeue the pod, so a container
// that exits at SIGTERM would still keep its pod for the whole period.
func (w *podWorker) finalDelete() {
	pod := w.spec()
	client := w.p.cfg.Client
	if client == nil || pod.DeletionTimestamp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Let virtual-kubelet write the terminal status first, so the object's
	// last state says how the containers ended.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		cur, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return // already gone
		}
		if cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	zero := int64(0)
	uid := pod.UID
	err := client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Warn("delete the terminated pod object", "err", err)
	}
}

func (w *podWorker) deleteAllSandboxes(ctx context.Context) {
	w.mu.Lock()
	names := make([]string, 0, len(w.sandboxes))
	for n := range w.sandboxes {
		names = append(names, n)
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.deleteSandboxCtx(ctx, n)
		}()
	}
	wg.Wait()
	w.deleteLeftovers()
}

// deleteLeftovers removes adopted VMs that no container claimed.
func (w *podWorker) deleteLeftovers() {
	w.mu.Lock()
	left := w.adopted
	w.adopted = map[string]Sandbox{}
	w.mu.Unlock()
	for name, sb := range left {
		if err := sb.Delete(context.Background()); err != nil {
			w.log.Error("delete leftover VM", "container", name, "vm", sb.ID(), "err", err)
		}
	}
}

func (w *podWorker) deleteSandbox(name string) {
	w.deleteSandboxCtx(context.Background(), name)
}

func (w *podWorker) deleteSandboxCtx(ctx context.Context, name string) {
	w.mu.Lock()
	sb := w.sandboxes[name]
	delete(w.sandboxes, name)
	w.mu.Unlock()
	if sb == nil {
		return
	}
	if err := sb.Delete(ctx); err != nil && !errors.Is(err, container.ErrNotFound) {
		w.log.Error("delete VM", "container", name, "vm", sb.ID(), "err", err)
	}
}

func (w *podWorker) sandbox(name string) Sandbox {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sandboxes[name]
}

// update takes a newer version of the pod.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	old := w.pod
	np := pod.DeepCopy()
	np.Status = old.Status
	w.pod = np
	w.mu.Unlock()
	w.volumes.kick()
	for i := range np.Spec.Containers {
		if i < len(old.Spec.Containers) && np.Spec.Containers[i].Image != old.Spec.Containers[i].Image {
			w.restartForImage(np.Spec.Containers[i].Name)
		}
	}
}

func (w *podWorker) spec() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// snapshot returns the pod with its current status.
func (w *podWorker) snapshot() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := w.pod.DeepCopy()
	pod.Status = buildStatus(w.pod, w.inits, w.apps, w.meta, w.p.now())
	return pod
}

// publish pushes the current status to virtual-kubelet. Pushes are
// serialised so an older snapshot never overtakes a newer one.
func (w *podWorker) publish() {
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	pod := w.snapshot()
	w.mu.Lock()
	w.pod.Status = pod.Status // conditions keep their transition times
	w.mu.Unlock()
	w.p.push(pod)
}

// hasVMs reports whether the pod counts as running on the node.
// A pod being deleted no longer counts: virtual-kubelet reads GetPods as
// "running", and the pod is on its way out.
func (w *podWorker) hasVMs() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.finished && !w.terminating && (len(w.sandboxes) > 0 || len(w.adopted) > 0)
}

// holdsResources reports whether the pod counts against allocatable: from
// admission until its VMs are gone.
func (w *podWorker) holdsResources() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.finished && w.rejected == nil
}

func (w *podWorker) event(typ, reason, msg string) {
	w.p.cfg.Recorder.Event(w.spec(), typ, reason, msg)
}

func (w *podWorker) eventf(typ, reason, format string, args ...any) {
	w.p.cfg.Recorder.Eventf(w.spec(), typ, reason, format, args...)
}

func (p *Provider) now() time.Time { return time.Now() }
