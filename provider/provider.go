// Package provider is the virtual-kubelet provider of vk-applevm: it runs
// every container of every pod bound to the node in its own VM and reports
// the kubelet's view of them back. Its parts follow the kubelet's seams:
//
//   - Provider (this package): virtual-kubelet's surface — CreatePod,
//     UpdatePod, DeletePod, GetPod(s), NotifyPods, logs, exec, attach,
//     port-forward, stats — plus admission and, at start, the VMs an
//     earlier run of the node left (Reconcile). It keeps one pod worker
//     per pod and only hands work to it: virtual-kubelet calls from a
//     small pool of sync workers that must not wait for VMs.
//   - podworker: one Worker per pod drives each container through
//     ctrstate's states: pull, plan, VM, start, watch, exit, restart.
//   - ctrstate: a container's record, a state machine with named
//     transitions (an invalid one is an error).
//   - status: computes the pod's status from the records and is the one
//     place statuses are pushed from (NotifyPods).
//   - prober: the probe workers of running instances; results go back to
//     the pod worker.
//   - volume: the files volumes (configMap, secret, projected,
//     downwardAPI, tokens), kept up to date inside the VMs.
//   - env: environment and downward API resolution.
//   - podnet: the pod's place on the node's pod network (one address for
//     all its VMs, the ports each serves, relays between siblings) and
//     the Services and host ports the node gives the switch.
//   - vmruntime: the container runtime behind two small interfaces
//     (Runtime, VM); package container implements them.
//
// How a pod flows through them: CreatePod admits the pod and starts its
// Worker; the Worker runs the init containers in order, then the app
// containers side by side. For each start a container's spec and its
// pulled image become one plan (VM configuration, volumes' files from
// volume, environment from env, the main process); the plan creates or
// resets the container's VM through vmruntime and starts the process; the
// record goes Waiting → Running; prober reports Started/Ready and liveness
// failures; the exit (with its termination message) makes the record
// Exited, and the restart policy and CrashLoopBackOff decide what is next.
// Each change reaches status, which pushes the pod's status to
// virtual-kubelet. DeletePod (or the pod's active deadline) stops the
// Worker: preStop, SIGTERM, SIGKILL after the grace period, VMs deleted,
// the terminal status pushed and the pod object removed. Every wait is on
// an injected clock (k8s.io/utils/clock), so tests run on a fake one.
package provider

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	"github.com/vk-applevm/vk-applevm/provider/status"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
)

// Config configures a Provider.
type Config struct {
	NodeName string
	// NodeIP is reported as the pods' hostIP.
	NodeIP string
	// Root is the node's state directory; pod logs and emptyDir volumes
	// live under Root/pods/<namespace>_<name>_<uid>/.
	Root    string
	Runtime vmruntime.Runtime
	// Objects reads configMaps, secrets and services (listers).
	Objects env.Objects
	// Client requests service account tokens and removes terminated pod
	// objects (may be nil in tests).
	Client kubernetes.Interface
	// Pods is the node's pod informer (may be nil in tests).
	Pods     corev1listers.PodLister
	Recorder record.EventRecorder
	// Allocatable is what pods may use (admission checks against it).
	Allocatable corev1.ResourceList
	// DefaultMemoryBytes is the VM memory of a container without a memory
	// request or limit; VMOverheadBytes is added to every VM (guest kernel
	// and agent) and counted against allocatable.
	DefaultMemoryBytes uint64
	VMOverheadBytes    uint64
	MaxCPUs            int
	// ClusterDNS and ClusterDomain configure dnsPolicy ClusterFirst.
	ClusterDNS    []string
	ClusterDomain string
	// Network is the pod network (network/switchnet); nil in unit tests.
	Network vmruntime.PodNetwork
	// OnStatus, if set, is called after every pod status push (the node's
	// pod network sync follows pods' addresses and host ports with it).
	OnStatus func()
	// BackoffInitial and BackoffMax shape CrashLoopBackOff and
	// ImagePullBackOff (kubelet: 10 s and 5 min).
	BackoffInitial, BackoffMax time.Duration
	// VolumeSyncPeriod is how often files volumes are refreshed.
	VolumeSyncPeriod time.Duration
	// EvictionPeriod is how often pods with local storage limits are
	// measured against them (default 10 s, the kubelet's).
	EvictionPeriod time.Duration
	// Clock is what every wait of the provider goes through (default: the
	// real clock).
	Clock  clock.WithTicker
	Logger *slog.Logger
}

// Provider implements nodeutil.Provider and node.PodNotifier.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	sizing podworker.Sizing
	status *status.Manager
	wcfg   *podworker.Config

	mu      sync.Mutex
	workers map[string]*podworker.Worker // key: namespace/name
	// orphans are VMs found at start whose pod the node is not (yet) told
	// about; GetPods reports them so virtual-kubelet's dangling-pod sweep
	// deletes those Kubernetes no longer has.
	orphans map[types.UID]*orphanPod
	// statsState keeps the previous CPU samples between scrapes.
	statsState *statsState
}

type orphanPod struct {
	pod *corev1.Pod
	vms []vmruntime.VM
}

// New returns a provider; call Reconcile before the node starts serving.
func New(cfg Config) (*Provider, error) {
	if cfg.Runtime == nil || cfg.Objects == nil || cfg.Recorder == nil {
		return nil, fmt.Errorf("provider config: runtime, objects and recorder are required")
	}
	if cfg.Root == "" || cfg.NodeName == "" {
		return nil, fmt.Errorf("provider config: root and node name are required")
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 10 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.DefaultMemoryBytes == 0 {
		cfg.DefaultMemoryBytes = 512 << 20
	}
	if cfg.VolumeSyncPeriod <= 0 {
		cfg.VolumeSyncPeriod = 10 * time.Second
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Provider{
		cfg:        cfg,
		log:        cfg.Logger,
		sizing:     podworker.Sizing{DefaultMemory: cfg.DefaultMemoryBytes, MaxCPUs: cfg.MaxCPUs},
		status:     status.NewManager(cfg.Clock),
		workers:    map[string]*podworker.Worker{},
		orphans:    map[types.UID]*orphanPod{},
		statsState: newStatsState(cfg.Clock),
	}
	p.wcfg = &podworker.Config{
		NodeIP: cfg.NodeIP, Root: cfg.Root, Runtime: cfg.Runtime, Objects: cfg.Objects, Client: cfg.Client, Pods: cfg.Pods,
		Recorder: cfg.Recorder, Allocatable: cfg.Allocatable, Sizing: p.sizing,
		ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, Network: cfg.Network,
		BackoffInitial: cfg.BackoffInitial, BackoffMax: cfg.BackoffMax, VolumeSyncPeriod: cfg.VolumeSyncPeriod,
		EvictionPeriod: cfg.EvictionPeriod, Clock: cfg.Clock, Status: p.status, Log: cfg.Logger,
	}
	return p, nil
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func (p *Provider) podDir(pod *corev1.Pod) string {
	return filepath.Join(p.cfg.Root, "pods", podworker.PodDirName(pod))
}

// Reconcile finds the VMs left by an earlier run of the node. VMs of pods
// that come back through CreatePod are re-attached by their workers; the
// rest are reported by GetPods until virtual-kubelet deletes them.
func (p *Provider) Reconcile(ctx context.Context) error {
	vms, err := p.cfg.Runtime.VMs(ctx)
	if err != nil {
		return fmt.Errorf("list VMs left by an earlier run: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, vm := range vms {
		l := vm.Labels()
		uid := types.UID(l[podworker.LabelPodUID])
		if uid == "" {
			continue // not a pod's VM (a CLI container)
		}
		o := p.orphans[uid]
		if o == nil {
			o = &orphanPod{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: l[podworker.LabelNamespace], Name: l[podworker.LabelPodName], UID: uid}}}
			p.orphans[uid] = o
		}
		o.pod.Spec.Containers = append(o.pod.Spec.Containers, corev1.Container{Name: l[podworker.LabelContainer]})
		o.vms = append(o.vms, vm)
	}
	if len(p.orphans) > 0 {
		p.log.Info("found VMs of pods from an earlier run", "pods", len(p.orphans), "vms", len(vms))
	}
	return nil
}

// CreatePod hands a new pod to a worker.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := podKey(pod.Namespace, pod.Name)
	old, exists := p.workers[key]
	if exists && old.UID() == pod.UID {
		old.Update(pod)
		return nil
	}
	adopted := p.takeOrphan(pod.UID)
	w := podworker.New(p.wcfg, pod, adopted, p.admitLocked(pod, len(adopted) > 0))
	p.workers[key] = w
	go p.removeWhenDone(w)
	if !exists {
		w.Start()
		return nil
	}
	// A pod of the same name but a new UID: the old one is still
	// terminating; the new one starts once it is gone.
	go func() {
		<-old.Done()
		w.Start()
	}()
	return nil
}

func (p *Provider) takeOrphan(uid types.UID) []vmruntime.VM {
	o := p.orphans[uid]
	delete(p.orphans, uid)
	if o == nil {
		return nil
	}
	return o.vms
}

// UpdatePod applies the mutable parts of a pod (images, labels and
// annotations for the downward API, activeDeadlineSeconds).
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	w, err := p.worker(pod.Namespace, pod.Name)
	if err != nil || w.UID() != pod.UID {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	w.Update(pod)
	return nil
}

// DeletePod starts the pod's graceful termination; it returns at once and
// the worker reports the terminal status when the VMs are gone.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[podKey(pod.Namespace, pod.Name)]
	if ok && w.UID() != pod.UID {
		ok = false
	}
	o := p.orphans[pod.UID]
	delete(p.orphans, pod.UID)
	p.mu.Unlock()
	if o != nil {
		go p.deleteOrphan(o)
	}
	if !ok {
		if o != nil {
			return nil
		}
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	w.Terminate(gracePeriod(pod), pod)
	return nil
}

func (p *Provider) deleteOrphan(o *orphanPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, vm := range o.vms {
		if err := vm.Delete(ctx); err != nil {
			p.log.Error("delete VM of a pod Kubernetes no longer has", "pod", o.pod.Namespace+"/"+o.pod.Name, "vm", vm.ID(), "err", err)
		}
	}
	if p.cfg.Network != nil {
		if err := p.cfg.Network.ReleasePod(ctx, podnet.PodKey(o.pod.UID)); err != nil {
			p.log.Warn("release the address of a pod Kubernetes no longer has", "pod", o.pod.Namespace+"/"+o.pod.Name, "err", err)
		}
	}
	if err := podworker.RemovePodDir(p.cfg.Root, o.pod); err != nil {
		p.log.Warn("remove the directory of a pod Kubernetes no longer has", "pod", o.pod.Namespace+"/"+o.pod.Name, "err", err)
	}
}

// SweepPodDirs removes, at start, the directories of pods that are neither
// bound to this node in the API server nor have VMs here: what a node that
// died between a pod's deletion and its cleanup left behind. Call it after
// Reconcile and before pods are handed over.
func (p *Provider) SweepPodDirs(ctx context.Context) error {
	if p.cfg.Client == nil {
		return nil
	}
	list, err := p.cfg.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + p.cfg.NodeName})
	if err != nil {
		return fmt.Errorf("list the node's pods to sweep pod directories: %w", err)
	}
	known := map[types.UID]bool{}
	for _, pod := range list.Items {
		known[pod.UID] = true
	}
	p.mu.Lock()
	for uid := range p.orphans {
		known[uid] = true
	}
	p.mu.Unlock()
	removed, err := podworker.SweepPodDirs(p.cfg.Root, func(uid types.UID) bool { return known[uid] })
	if len(removed) > 0 {
		p.log.Info("removed directories of pods this node no longer has", "dirs", removed)
	}
	return err
}

func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// workerLinger is how long a finished worker stays: GetPod still answers
// virtual-kubelet's last status sync for the pod.
const workerLinger = 30 * time.Second

// removeWhenDone forgets a worker a little after it finished (if it is
// still the pod's current one).
func (p *Provider) removeWhenDone(w *podworker.Worker) {
	<-w.Done()
	<-p.cfg.Clock.After(workerLinger)
	p.mu.Lock()
	defer p.mu.Unlock()
	pod := w.Pod()
	key := podKey(pod.Namespace, pod.Name)
	if p.workers[key] == w {
		delete(p.workers, key)
		p.status.Forget(w.UID())
	}
}

func (p *Provider) worker(namespace, name string) (*podworker.Worker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.workers[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return w, nil
}

func (p *Provider) allWorkers() []*podworker.Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*podworker.Worker, 0, len(p.workers))
	for _, w := range p.workers {
		out = append(out, w)
	}
	return out
}

// GetPod returns the pod with its current status.
func (p *Provider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	w, err := p.worker(namespace, name)
	if err != nil {
		return nil, err
	}
	if pod, ok := p.status.Pod(w.UID()); ok {
		return pod, nil
	}
	// Not started yet (waiting for an older pod of the same name).
	return w.Pod().DeepCopy(), nil
}

// GetPodStatus returns the pod's current status.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods lists the pods that have VMs on this node (the kubelet's
// "running pods"): live workers that have not finished terminating, and
// VMs of pods from an earlier run not claimed yet.
func (p *Provider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	p.mu.Lock()
	for _, o := range p.orphans {
		out = append(out, o.pod.DeepCopy())
	}
	p.mu.Unlock()
	for _, w := range p.allWorkers() {
		if !w.HasVMs() {
			continue
		}
		if pod, ok := p.status.Pod(w.UID()); ok {
			out = append(out, pod)
		}
	}
	return out, nil
}

// NotifyPods registers the status callback; statuses computed before it
// existed are sent now.
func (p *Provider) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	if hook := p.cfg.OnStatus; hook != nil {
		p.status.SetNotify(func(pod *corev1.Pod) { cb(pod); hook() })
		return
	}
	p.status.SetNotify(cb)
}

// runningContainer is one container with a live VM, for stats.
type runningContainer struct {
	Namespace, Pod string
	UID            types.UID
	Container      string
	VM             vmruntime.VM
	// StartedAt is when the current instance started; PodStart when the
	// pod was first acknowledged.
	StartedAt, PodStart time.Time
}

// runningContainers lists the containers that currently run in a VM.
func (p *Provider) runningContainers() []runningContainer {
	var out []runningContainer
	for _, w := range p.allWorkers() {
		pod := w.Pod()
		for _, r := range w.Running() {
			out = append(out, runningContainer{
				Namespace: pod.Namespace, Pod: pod.Name, UID: pod.UID, Container: r.Container, VM: r.VM,
				StartedAt: r.StartedAt, PodStart: w.StartTime(),
			})
		}
	}
	return out
}
