package status

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Manager keeps the latest status of every pod on the node and pushes each
// change to virtual-kubelet (NotifyPods). Pushes of one pod are serialised,
// so an older status never overtakes a newer one, and a pod that reached a
// terminal phase never leaves it (the kubelet refuses that transition too).
type Manager struct {
	clock clock.PassiveClock

	mu     sync.Mutex
	notify func(*corev1.Pod)
	pods   map[types.UID]*entry
}

type entry struct {
	push sync.Mutex // held while computing and pushing
	mu   sync.Mutex // guards pod
	pod  *corev1.Pod
}

// NewManager returns a manager whose timestamps come from clk.
func NewManager(clk clock.PassiveClock) *Manager {
	return &Manager{clock: clk, pods: map[types.UID]*entry{}}
}

// SetNotify registers virtual-kubelet's callback and sends it the status
// of every pod known so far.
func (m *Manager) SetNotify(cb func(*corev1.Pod)) {
	m.mu.Lock()
	m.notify = cb
	entries := make([]*entry, 0, len(m.pods))
	for _, e := range m.pods {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	for _, e := range entries {
		e.push.Lock()
		if p := e.get(); p != nil {
			cb(p)
		}
		e.push.Unlock()
	}
}

func (e *entry) get() *corev1.Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pod == nil {
		return nil
	}
	return e.pod.DeepCopy()
}

func (m *Manager) entry(uid types.UID) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pods[uid]
	if e == nil {
		e = &entry{}
		m.pods[uid] = e
	}
	return e
}

// Update computes the pod's status from what input returns and pushes it
// when it changed. input runs under the pod's push lock, so the records it
// reads are never older than those of a status already pushed.
func (m *Manager) Update(uid types.UID, input func() Input) {
	e := m.entry(uid)
	e.push.Lock()
	defer e.push.Unlock()
	in := input()
	prev := e.get()
	var prevStatus *corev1.PodStatus
	if prev != nil {
		prevStatus = &prev.Status
	} else {
		prevStatus = &in.Pod.Status
	}
	st := Generate(in, prevStatus, m.clock.Now())
	if terminal(prevStatus.Phase) && !terminal(st.Phase) {
		st.Phase, st.Reason, st.Message = prevStatus.Phase, prevStatus.Reason, prevStatus.Message
	}
	if prev != nil && apiequality.Semantic.DeepEqual(prev.Status, st) && apiequality.Semantic.DeepEqual(prev.ObjectMeta, in.Pod.ObjectMeta) {
		return
	}
	pod := in.Pod.DeepCopy()
	pod.Status = st
	e.mu.Lock()
	e.pod = pod
	e.mu.Unlock()
	m.mu.Lock()
	cb := m.notify
	m.mu.Unlock()
	if cb != nil {
		cb(pod.DeepCopy())
	}
}

func terminal(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

// Pod returns the last status computed for the pod, with its object.
func (m *Manager) Pod(uid types.UID) (*corev1.Pod, bool) {
	m.mu.Lock()
	e := m.pods[uid]
	m.mu.Unlock()
	if e == nil {
		return nil, false
	}
	p := e.get()
	return p, p != nil
}

// Forget drops a pod that is gone from the node.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pods, uid)
}
