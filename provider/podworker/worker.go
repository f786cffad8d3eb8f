// Package podworker runs one pod: one Worker per pod drives each of its
// containers (a ctr each) through the states of package ctrstate, with the
// kubelet's order and policies: init containers one by one, then the app
// containers side by side; image pulls, a VM per container, restarts with
// CrashLoopBackOff, probes (package prober) and their consequences, files
// volumes kept up to date (package volume), lifecycle hooks, the pod's
// active deadline, and graceful termination. Every change of state is
// reported to the status manager (package status), which computes and
// pushes the pod's status. Every wait is on the injected clock.
//
// A container's start goes one way: the spec and the pulled image make a
// startPlan (the VM's configuration and the main process, built once per
// start), the plan makes or resets the VM, the VM runs the process, and
// the process's exit comes back to the container's record.
package podworker

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/prober"
	"github.com/vk-applevm/vk-applevm/provider/status"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	"github.com/vk-applevm/vk-applevm/provider/volume"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
)

// Config is what the pod workers of a node share.
type Config struct {
	// NodeIP is reported as the pods' hostIP.
	NodeIP string
	// Root is the node's state directory; pod logs and emptyDir volumes
	// live under Root/pods/<namespace>_<name>_<uid>/.
	Root    string
	Runtime vmruntime.Runtime
	Objects env.Objects
	Client  kubernetes.Interface // may be nil in tests
	// Pods is the node's pod informer (virtual-kubelet's): finalDelete
	// waits on it for the terminal status instead of asking the API
	// server every 100 ms (nil: it asks).
	Pods     corev1listers.PodLister
	Recorder record.EventRecorder
	// Allocatable answers resourceFieldRef limits a container does not set.
	Allocatable corev1.ResourceList
	Sizing      Sizing
	// ClusterDNS and ClusterDomain configure dnsPolicy ClusterFirst.
	ClusterDNS    []string
	ClusterDomain string
	// BackoffInitial and BackoffMax shape CrashLoopBackOff and
	// ImagePullBackOff (kubelet: 10 s and 5 min).
	BackoffInitial, BackoffMax time.Duration
	// VolumeSyncPeriod is how often files volumes are refreshed.
	VolumeSyncPeriod time.Duration
	// EvictionPeriod is how often a pod with local storage limits is
	// measured against them (0: DefaultEvictionPeriod).
	EvictionPeriod time.Duration
	// Network is the pod network; nil leaves the pods' VMs on their own
	// (unit tests).
	Network vmruntime.PodNetwork
	Clock   clock.WithTicker
	Status  *status.Manager
	Log     *slog.Logger
}

// Rejection is why a pod is refused before any VM exists, in the kubelet's
// admission terms (phase Failed, a reason, a message, a Warning event).
type Rejection struct {
	Reason, Message string
}

// Worker owns one pod.
type Worker struct {
	cfg             *Config
	uid             types.UID
	namespace, name string
	log             *slog.Logger
	rejected        *Rejection
	inits, apps     []*ctr
	leftovers       []vmruntime.VM
	prober          *prober.Manager
	volumes         *volume.Manager
	ports           *podPorts
	backoff         *flowcontrol.Backoff
	// podDir is set once the pod's directory has been made (makePodDir),
	// by the first start of any of its containers.
	podDir    sync.Once
	podDirErr error

	// runCtx ends when the pod is stopped: containers stop restarting.
	runCtx   context.Context
	stopRuns context.CancelFunc
	stopOnce sync.Once
	stopc    chan time.Duration // the grace period of the first stop
	delOnce  sync.Once
	deleted  chan struct{} // closed by Terminate (DeletePod)
	deadline chan struct{} // UpdatePod may have moved the active deadline
	done     chan struct{} // closed when the worker has finished

	mu        sync.Mutex
	pod       *corev1.Pod
	podIP     string
	startTime time.Time
	vmReady   bool
	// phase, reason and message override the computed phase.
	phase           corev1.PodPhase
	reason, message string
	finished        bool // terminal: VMs deleted
	// deadlineExceeded: the pod ran past activeDeadlineSeconds.
	deadlineExceeded bool
	// evicted is the eviction message of a pod over its local storage
	// limits.
	evicted     string
	terminating bool // DeletePod was called
}

// New returns the worker of pod. adopted are the pod's VMs left by an
// earlier run of the node; rejected, if set, fails the pod at once.
func New(cfg *Config, pod *corev1.Pod, adopted []vmruntime.VM, rejected *Rejection) *Worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Worker{
		cfg: cfg, uid: pod.UID, namespace: pod.Namespace, name: pod.Name,
		log:      cfg.Log.With("pod", pod.Namespace+"/"+pod.Name),
		rejected: rejected,
		runCtx:   ctx, stopRuns: cancel,
		stopc:    make(chan time.Duration, 1),
		deleted:  make(chan struct{}),
		deadline: make(chan struct{}, 1),
		done:     make(chan struct{}),
		pod:      pod.DeepCopy(),
		backoff:  flowcontrol.NewFakeBackOff(cfg.BackoffInitial, cfg.BackoffMax, cfg.Clock),
	}
	byName := map[string]vmruntime.VM{}
	for _, vm := range adopted {
		byName[vm.Labels()[LabelContainer]] = vm
	}
	prev := map[string]*corev1.ContainerStatus{}
	for i := range pod.Status.InitContainerStatuses {
		prev["init/"+pod.Status.InitContainerStatuses[i].Name] = &pod.Status.InitContainerStatuses[i]
	}
	for i := range pod.Status.ContainerStatuses {
		prev["app/"+pod.Status.ContainerStatuses[i].Name] = &pod.Status.ContainerStatuses[i]
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		w.inits = append(w.inits, newCtr(w, ctrstate.New(c, true, prev["init/"+c.Name]), byName[c.Name]))
		delete(byName, c.Name)
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		w.apps = append(w.apps, newCtr(w, ctrstate.New(c, false, prev["app/"+c.Name]), byName[c.Name]))
		delete(byName, c.Name)
	}
	if len(w.inits) > 0 {
		for _, c := range w.apps {
			if c.rec.Snapshot().State == ctrstate.Waiting {
				c.transition(c.rec.Wait(ctrstate.ReasonPodInitializing, ""))
			}
		}
	}
	// VMs of containers the pod no longer has are deleted when it runs.
	for _, vm := range byName {
		w.leftovers = append(w.leftovers, vm)
	}
	w.ports = &podPorts{w: w, vms: map[string]*vmPorts{}}
	w.prober = prober.NewManager(cfg.Clock, w.probeResult, w.event)
	w.volumes = volume.NewManager(volume.Config{
		Objects: cfg.Objects, Client: cfg.Client, HostIP: cfg.NodeIP, Allocatable: cfg.Allocatable,
		SyncPeriod: cfg.VolumeSyncPeriod, Clock: cfg.Clock, Log: w.log,
	}, volumePod{w})
	return w
}

// UID is the pod's UID.
func (w *Worker) UID() types.UID { return w.uid }

// Done is closed when the worker has finished.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Pod is the latest pod object the worker was given.
func (w *Worker) Pod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *Worker) dir() string {
	return filepath.Join(w.cfg.Root, "pods", PodDirName(w.Pod()))
}

// LogDir is where a container's logs are, one file per instance.
func (w *Worker) LogDir(containerName string) string {
	return filepath.Join(w.dir(), containerName)
}

// address is where the node reaches a container's VM: probes, the pod's IP
// and status.podIP in the environment: the pod's address, which its VMs
// share.
func (w *Worker) address(vm vmruntime.VM) string { return vm.IP() }

func (w *Worker) containers() []*ctr {
	return append(append([]*ctr{}, w.inits...), w.apps...)
}

func (w *Worker) ctr(name string) *ctr {
	for _, c := range w.containers() {
		if c.rec.Name() == name {
			return c
		}
	}
	return nil
}

// Start runs the pod.
func (w *Worker) Start() { go w.run() }

func (w *Worker) run() {
	defer close(w.done)
	for _, vm := range w.leftovers {
		if err := vm.Delete(context.Background()); err != nil {
			w.log.Error("delete the VM of a container the pod does not have", "vm", vm.ID(), "err", err)
		}
	}
	if w.rejected != nil {
		w.event(corev1.EventTypeWarning, w.rejected.Reason, w.rejected.Message)
		w.mu.Lock()
		w.phase, w.reason, w.message = corev1.PodFailed, w.rejected.Reason, w.rejected.Message
		w.finished = true
		w.mu.Unlock()
		for _, c := range w.containers() {
			if err := c.rec.Wait(w.rejected.Reason, w.rejected.Message); err != nil {
				w.log.Error("reject container", "err", err)
			}
		}
		w.publish()
		for _, c := range w.containers() {
			c.deleteAdopted(context.Background())
		}
		w.releaseNetwork(context.Background())
		return
	}
	w.mu.Lock()
	w.startTime = w.cfg.Clock.Now()
	if st := w.pod.Status.StartTime; st != nil {
		w.startTime = st.Time
	}
	w.mu.Unlock()
	w.publish()

	go w.volumes.Run(w.runCtx)
	go w.enforceDeadline()
	go w.enforceStorage()
	if w.runInits() {
		w.runApps()
	}
	select {
	case grace := <-w.stopc:
		// Deleted, or past its deadline: stop what still runs. A pod past
		// its deadline turns Failed only now: virtual-kubelet stops
		// pushing the statuses of a terminal pod, and the kubelet too
		// reports a terminal phase only once the containers have stopped.
		w.stopAll(grace)
		w.mu.Lock()
		if w.deadlineExceeded {
			w.phase, w.reason, w.message = corev1.PodFailed, ReasonDeadlineExceeded, MessageDeadlineExceeded
		}
		if w.evicted != "" {
			w.phase, w.reason, w.message = corev1.PodFailed, ReasonEvicted, w.evicted
		}
		if w.phase == corev1.PodFailed {
			// As the kubelet's TerminatePod: a container with no exit (one
			// still being created when the pod was evicted) ends as
			// ContainerStatusUnknown, never Waiting in a Failed pod, whose
			// status is the last virtual-kubelet pushes. Under w.mu, so
			// no status goes out between the phase and this.
			now := w.cfg.Clock.Now()
			for _, c := range w.containers() {
				c.rec.Lose(now)
			}
		}
		w.mu.Unlock()
	default:
		// Ended on its own: nothing runs any more. Free the VMs now and
		// keep the pod's status until Kubernetes deletes it.
		w.stopOnce.Do(func() { w.stopRuns() })
		w.deleteVMs(context.Background())
	}
	// The pod's address goes with its last VM, as a kubelet tears down a
	// pod's network with its sandbox.
	w.releaseNetwork(context.Background())
	w.prober.Stop()
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	w.publish()
	<-w.deleted
	w.finish()
	w.removeDir()
}

// removeDir removes the pod's directory once Kubernetes deleted the pod
// and its VMs are gone, as the kubelet cleans up orphaned pod directories.
// A VM whose deletion failed may still share the directory: then it stays
// for the next start's sweep.
func (w *Worker) removeDir() {
	for _, c := range w.containers() {
		if c.hasVM() {
			w.log.Warn("keep the pod's directory: a VM of the pod is still there")
			return
		}
	}
	if err := RemovePodDir(w.cfg.Root, w.Pod()); err != nil {
		w.log.Error("remove the pod's directory", "err", err)
	}
}

// runInits runs the init containers in order; it returns false when the
// pod cannot proceed (a failed init container, or the pod stopping).
func (w *Worker) runInits() bool {
	for _, c := range w.inits {
		if c.rec.Snapshot().Succeeded() {
			// Done in an earlier run of the node; its VM is not needed.
			c.deleteAdopted(w.runCtx)
			continue
		}
		if c.rec.Sidecar() {
			go c.run(w.runCtx)
			select {
			case <-c.startedc:
			case <-w.runCtx.Done():
				return false
			}
			continue
		}
		c.run(w.runCtx)
		if !c.rec.Snapshot().Succeeded() {
			return false
		}
		// A finished init container's VM is not needed any more; its logs
		// stay on the host.
		c.deleteVM(context.Background())
	}
	return w.runCtx.Err() == nil
}

func (w *Worker) runApps() {
	for _, c := range w.apps {
		if s := c.rec.Snapshot(); s.State == ctrstate.Waiting && s.Status.State.Waiting.Reason == ctrstate.ReasonPodInitializing {
			c.transition(c.rec.Wait(ctrstate.ReasonContainerCreating, ""))
		}
	}
	var wg sync.WaitGroup
	for _, c := range w.apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(w.runCtx)
		}()
	}
	wg.Wait()
}

// stop ends the pod's containers within grace; the first call wins.
func (w *Worker) stop(grace time.Duration) {
	w.stopOnce.Do(func() {
		w.stopc <- grace
		w.stopRuns()
	})
}

// Terminate starts the pod's graceful deletion (DeletePod); later calls
// are ignored.
func (w *Worker) Terminate(grace time.Duration, deleted *corev1.Pod) {
	w.delOnce.Do(func() {
		w.mu.Lock()
		w.terminating = true
		if deleted != nil {
			w.pod = w.pod.DeepCopy()
			w.pod.DeletionTimestamp = deleted.DeletionTimestamp
			w.pod.DeletionGracePeriodSeconds = deleted.DeletionGracePeriodSeconds
		}
		w.mu.Unlock()
		w.stop(grace)
		close(w.deleted)
	})
}

// stopAll stops every container that has a VM within grace (preStop,
// SIGTERM, SIGKILL when the grace period is over) and deletes the VMs.
func (w *Worker) stopAll(grace time.Duration) {
	deadline := w.cfg.Clock.Now().Add(grace)
	// Every call to a VM is bounded: a guest that stops answering costs
	// the grace period and a margin, never a pod stuck in termination.
	ctx, cancel := withTimeout(context.Background(), w.cfg.Clock, grace+killWait+stopMargin)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range w.containers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(ctx, deadline, "Stopping container "+c.rec.Name())
		}()
	}
	wg.Wait()
	w.deleteVMs(ctx)
}

// stopMargin is how long past the grace period and the kill a stop may
// take before its VM calls are abandoned.
const stopMargin = 30 * time.Second

// finish reports the terminal status once Kubernetes deleted the pod and
// removes the pod object, as the kubelet does.
func (w *Worker) finish() {
	now := w.cfg.Clock.Now()
	succeeded := true
	for _, c := range w.containers() {
		c.rec.Lose(now)
		if s := c.rec.Snapshot(); !s.Init && (s.Terminated == nil || s.Terminated.ExitCode != 0) {
			succeeded = false
		}
	}
	w.mu.Lock()
	if w.phase == "" {
		w.phase = corev1.PodFailed
		if succeeded {
			w.phase = corev1.PodSucceeded
		}
	}
	w.mu.Unlock()
	w.publish()
	w.finalDelete()
}

// current is the pod object as the API server has it: from the node's pod
// informer when there is one (measured with 100 pods deleted at once, hack/
// bench churn: GETs every 100 ms held the node's API rate limit, and the
// deletes that followed timed out waiting for it).
func (w *Worker) current(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	if w.cfg.Pods != nil {
		return w.cfg.Pods.Pods(pod.Namespace).Get(pod.Name)
	}
	return client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
}

// finalDelete removes the pod object once its containers are gone, as the
// kubelet's status manager does (grace 0, UID precondition). Without it
// virtual-kubelet v1.14.1 deletes the object only when the grace period has
// run out: a status-only update does not requeue the pod, so a container
// that exits at SIGTERM would still keep its pod for the whole period.
func (w *Worker) finalDelete() {
	pod := w.Pod()
	client := w.cfg.Client
	if client == nil || pod.DeletionTimestamp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Let virtual-kubelet write the terminal status first, so the object's
	// last state says how the containers ended: poll for it every 100 ms,
	// for at most 3 s.
	for range 30 {
		cur, err := w.current(ctx, client, pod)
		if err != nil || cur.UID != pod.UID {
			return // already gone
		}
		if cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed {
			break
		}
		<-w.cfg.Clock.After(100 * time.Millisecond)
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

// deleteVMs deletes every VM of the pod.
func (w *Worker) deleteVMs(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range w.containers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.deleteVM(ctx)
			c.deleteAdopted(ctx)
		}()
	}
	wg.Wait()
}

// Update takes a newer version of the pod: files volumes follow labels,
// annotations and objects; a new image restarts its container; the active
// deadline may have moved.
func (w *Worker) Update(pod *corev1.Pod) {
	w.mu.Lock()
	old := w.pod
	w.pod = pod.DeepCopy()
	w.mu.Unlock()
	w.volumes.Kick()
	select {
	case w.deadline <- struct{}{}:
	default:
	}
	for i := range pod.Spec.Containers {
		if i < len(old.Spec.Containers) && pod.Spec.Containers[i].Image != old.Spec.Containers[i].Image {
			if c := w.ctr(pod.Spec.Containers[i].Name); c != nil {
				c.requestRestart("Container "+c.rec.Name()+" definition changed, will be restarted", true)
			}
		}
	}
	w.publish()
}

// publish hands the pod's state to the status manager.
func (w *Worker) publish() {
	w.cfg.Status.Update(w.uid, w.statusInput)
}

func (w *Worker) statusInput() status.Input {
	w.mu.Lock()
	in := status.Input{
		Pod: w.pod, PodIP: w.podIP, HostIP: w.cfg.NodeIP, StartTime: w.startTime, VMReady: w.vmReady,
		Phase: w.phase, Reason: w.reason, Message: w.message,
	}
	w.mu.Unlock()
	for _, c := range w.inits {
		in.Inits = append(in.Inits, c.rec.Snapshot())
	}
	for _, c := range w.apps {
		in.Apps = append(in.Apps, c.rec.Snapshot())
	}
	return in
}

// vmCreated records that a container's VM is up; the pod's first VM gives
// the pod its address (its VMs share it), as a kubelet's pod has its IP
// once the sandbox is up, before its init containers run.
func (w *Worker) vmCreated(c *ctr, vm vmruntime.VM) {
	w.mu.Lock()
	w.vmReady = true
	if w.podIP == "" {
		w.podIP = w.address(vm)
	}
	w.mu.Unlock()
	w.ports.watchPorts(c.rec.Name(), vm)
}

// PodIP is the pod's address, "" until its first app container has a VM.
func (w *Worker) PodIP() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.podIP
}

// HasVMs reports whether the pod counts as running on the node. A pod
// being deleted no longer counts: virtual-kubelet reads GetPods as
// "running", and the pod is on its way out.
func (w *Worker) HasVMs() bool {
	w.mu.Lock()
	finished, terminating := w.finished, w.terminating
	w.mu.Unlock()
	if finished || terminating {
		return false
	}
	for _, c := range w.containers() {
		if c.hasVM() {
			return true
		}
	}
	return false
}

// HoldsResources reports whether the pod counts against allocatable: from
// admission until its VMs are gone.
func (w *Worker) HoldsResources() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.finished && w.rejected == nil
}

// Adopted reports whether the pod had VMs from an earlier run of the node.
func (w *Worker) Adopted() bool {
	for _, c := range w.containers() {
		if c.adoptedVM() != nil {
			return true
		}
	}
	return false
}

func (w *Worker) event(typ, reason, msg string) {
	w.cfg.Recorder.Event(w.Pod(), typ, reason, msg)
}

func (w *Worker) eventf(typ, reason, format string, args ...any) {
	w.cfg.Recorder.Eventf(w.Pod(), typ, reason, format, args...)
}

// volumePod is the worker as the volume manager sees it.
type volumePod struct{ w *Worker }

func (v volumePod) Pod() *corev1.Pod { return v.w.Pod() }
func (v volumePod) PodIP() string    { return v.w.PodIP() }
func (v volumePod) VMs() map[string]volume.Writer {
	out := map[string]volume.Writer{}
	for _, c := range v.w.containers() {
		if vm := c.currentVM(); vm != nil {
			out[c.rec.Name()] = vm
		}
	}
	return out
}

// isGone reports an error that means the VM or process no longer exists.
func isGone(err error) bool { return errors.Is(err, container.ErrNotFound) }
