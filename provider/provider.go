// Package provider is the virtual-kubelet provider of vk-applevm: it runs
// every container of every pod bound to the node in its own VM (through a
// Runtime, implemented by package container) and reports the kubelet's view
// of them back: pod phase and conditions, container states and reasons,
// events, logs, exec, port-forward and stats.
//
// Each pod has a worker goroutine (worker.go); each container a runner
// (runner.go) that pulls, creates the VM, starts the process, probes it and
// restarts it with the kubelet's back-off. Every change is pushed through
// NotifyPods. CreatePod and DeletePod only hand work to the pod's worker:
// virtual-kubelet calls them from a small pool of sync workers that must not
// wait for VMs to boot or stop.
package provider

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Config configures a Provider.
type Config struct {
	NodeName string
	// NodeIP is reported as the pods' hostIP.
	NodeIP string
	// Root is the node's state directory; pod logs and emptyDir volumes
	// live under Root/pods/<namespace>_<name>_<uid>/.
	Root    string
	Runtime Runtime
	// Objects reads configMaps, secrets and services (listers).
	Objects objectSource
	// Client requests service account tokens (may be nil in tests: token
	// volumes then fail with a clear error).
	Client   kubernetes.Interface
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
	// BackoffInitial and BackoffMax shape CrashLoopBackOff and
	// ImagePullBackOff (kubelet: 10 s and 5 min).
	BackoffInitial, BackoffMax time.Duration
	// VolumeSyncPeriod is how often files volumes are refreshed.
	VolumeSyncPeriod time.Duration
	Logger           *slog.Logger
}

// Provider implements nodeutil.Provider and node.PodNotifier.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	sizing sizing

	mu      sync.Mutex
	workers map[string]*podWorker // key: namespace/name
	notify  func(*corev1.Pod)
	// orphans are VMs found at start whose pod the node is not (yet) told
	// about; GetPods reports them so virtual-kubelet's dangling-pod sweep
	// deletes those Kubernetes no longer has.
	orphans map[types.UID]*orphanPod
	// statsState keeps the previous CPU samples between scrapes.
	statsState *statsState
}

type orphanPod struct {
	pod       *corev1.Pod
	sandboxes []Sandbox
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Provider{
		cfg:        cfg,
		log:        cfg.Logger,
		sizing:     sizing{DefaultMemory: cfg.DefaultMemoryBytes, MaxCPUs: cfg.MaxCPUs},
		workers:    map[string]*podWorker{},
		orphans:    map[types.UID]*orphanPod{},
		statsState: newStatsState(),
	}, nil
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func (p *Provider) podDir(pod *corev1.Pod) string {
	return filepath.Join(p.cfg.Root, "pods", podDirName(pod))
}

// Reconcile finds the VMs left by an earlier run of the node. VMs of pods
// that come back through CreatePod are re-attached by their workers; the
// rest are reported by GetPods until virtual-kubelet deletes them.
func (p *Provider) Reconcile(ctx context.Context) error {
	sbs, err := p.cfg.Runtime.Sandboxes(ctx)
	if err != nil {
		return fmt.Errorf("list VMs left by an earlier run: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sb := range sbs {
		l := sb.Labels()
		uid := types.UID(l[labelPodUID])
		if uid == "" {
			continue // not a pod's VM (a CLI container)
		}
		o := p.orphans[uid]
		if o == nil {
			o = &orphanPod{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: l[labelNamespace], Name: l[labelPodName], UID: uid}}}
			p.orphans[uid] = o
		}
		o.pod.Spec.Containers = append(o.pod.Spec.Containers, corev1.Container{Name: l[labelContainer]})
		o.sandboxes = append(o.sandboxes, sb)
	}
	if len(p.orphans) > 0 {
		p.log.Info("found VMs of pods from an earlier run", "pods", len(p.orphans), "vms", len(sbs))
	}
	return nil
}

// CreatePod hands a new pod to a worker.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := podKey(pod.Namespace, pod.Name)
	if w, ok := p.workers[key]; ok {
		if w.uid == pod.UID {
			w.update(pod)
			return nil
		}
		// A pod of the same name but a new UID: the old one is still
		// terminating; the new one starts once it is gone.
		old := w
		nw := newPodWorker(p, pod.DeepCopy(), p.takeOrphan(pod.UID))
		p.admitLocked(nw)
		p.workers[key] = nw
		go func() {
			<-old.done
			nw.start()
		}()
		return nil
	}
	w := newPodWorker(p, pod.DeepCopy(), p.takeOrphan(pod.UID))
	p.admitLocked(w)
	p.workers[key] = w
	w.start()
	return nil
}

// admitLocked decides whether the node can run the pod, as the kubelet's
// admission does, before any VM exists. Pods that already have VMs (a node
// restart) are always admitted.
func (p *Provider) admitLocked(w *podWorker) {
	if len(w.adopted) > 0 {
		return
	}
	pod := w.pod
	if r := unsupported(pod); r != nil {
		w.rejected = r
		return
	}
	var used podCost
	n := 0
	for _, o := range p.workers {
		if !o.holdsResources() {
			continue
		}
		used.cpuMillis += o.cost.cpuMillis
		used.memoryBytes += o.cost.memoryBytes
		n++
	}
	w.rejected = admitResources(w.cost, used, n, p.cfg.Allocatable)
}

func (p *Provider) takeOrphan(uid types.UID) []Sandbox {
	o := p.orphans[uid]
	delete(p.orphans, uid)
	if o == nil {
		return nil
	}
	return o.sandboxes
}

// UpdatePod applies the mutable parts of a pod (images, labels and
// annotations for the downward API, activeDeadlineSeconds).
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[podKey(pod.Namespace, pod.Name)]
	p.mu.Unlock()
	if !ok || w.uid != pod.UID {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	w.update(pod)
	return nil
}

// DeletePod starts the pod's graceful termination; it returns at once and
// the worker reports the terminal status when the VMs are gone.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[podKey(pod.Namespace, pod.Name)]
	if ok && w.uid != pod.UID {
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
	w.terminate(gracePeriod(pod), pod)
	return nil
}

func (p *Provider) deleteOrphan(o *orphanPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, sb := range o.sandboxes {
		if err := sb.Delete(ctx); err != nil {
			p.log.Error("delete VM of a pod Kubernetes no longer has", "pod", o.pod.Namespace+"/"+o.pod.Name, "vm", sb.ID(), "err", err)
		}
	}
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

// removeWorker forgets a finished worker (if it is still the current one).
func (p *Provider) removeWorker(w *podWorker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := podKey(w.namespace, w.name)
	if p.workers[key] == w {
		delete(p.workers, key)
	}
}

func (p *Provider) worker(namespace, name string) (*podWorker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.workers[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return w, nil
}

// GetPod returns the pod with its current status.
func (p *Provider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	w, err := p.worker(namespace, name)
	if err != nil {
		return nil, err
	}
	return w.snapshot(), nil
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
	p.mu.Lock()
	workers := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		workers = append(workers, w)
	}
	var out []*corev1.Pod
	for _, o := range p.orphans {
		out = append(out, o.pod.DeepCopy())
	}
	p.mu.Unlock()
	for _, w := range workers {
		if w.hasVMs() {
			out = append(out, w.snapshot())
		}
	}
	return out, nil
}

// NotifyPods registers the status callback.
func (p *Provider) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	workers := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		workers = append(workers, w)
	}
	p.mu.Unlock()
	// Statuses computed before the callback existed are sent now.
	for _, w := range workers {
		w.publish()
	}
}

func (p *Provider) push(pod *corev1.Pod) {
	p.mu.Lock()
	cb := p.notify
	p.mu.Unlock()
	if cb != nil {
		cb(pod)
	}
}
