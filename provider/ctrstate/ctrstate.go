// Package ctrstate is the record of one container of a pod as the kubelet
// reports it: a small state machine with named transitions. An invalid
// transition is an error (as containerd's shim refuses to start a stopped
// task), so a caller that loses track of a container finds out at once
// instead of reporting a state that never happened.
//
//	           Start                Exit
//	Waiting ─────────────▶ Running ─────────▶ Exited
//	   ▲  ▲  FailStart                           │
//	   │  └──────────────────────────────────────┤ Wait (a restart is coming:
//	   │                                          │ the exit becomes lastState)
//	   └──── Wait ──── Unknown ── Reattach ─▶ Running
//	                 (restored as running from an earlier run of the node)
//
// Lose ends any state but Exited with ContainerStatusUnknown (the container
// could not be found when its pod was terminated). A Record is safe for
// concurrent use.
package ctrstate

import (
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// State is where a container is in its life.
type State int

const (
	// Waiting: no instance runs; Reason says why (being created, pulling,
	// backing off, blocked by its configuration).
	Waiting State = iota
	// Running: an instance runs.
	Running
	// Exited: the last instance ended; a restart, if any, is still to be
	// decided.
	Exited
	// Unknown: restored as running from the pod's status after a restart
	// of the node; re-attaching to its VM decides what it really is.
	Unknown
)

func (s State) String() string {
	switch s {
	case Waiting:
		return "waiting"
	case Running:
		return "running"
	case Exited:
		return "exited"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Reasons the kubelet gives container states.
const (
	ReasonContainerCreating = "ContainerCreating"
	ReasonPodInitializing   = "PodInitializing"
	ReasonCompleted         = "Completed"
	ReasonError             = "Error"
	ReasonOOMKilled         = "OOMKilled"
	ReasonStatusUnknown     = "ContainerStatusUnknown"
)

// ErrInvalidTransition is wrapped by every refused transition.
var ErrInvalidTransition = errors.New("invalid container state transition")

// Record is one container of a pod.
type Record struct {
	name    string
	init    bool
	sidecar bool

	mu         sync.Mutex
	state      State
	waiting    corev1.ContainerStateWaiting
	startedAt  time.Time
	terminated *corev1.ContainerStateTerminated
	last       *corev1.ContainerStateTerminated
	restarts   int32
	// restartNext: the next Start is a restart (an instance ran before).
	restartNext bool
	started     bool
	ready       bool
	image       string
	imageID     string
	vmID        string
}

// New returns the record of a container that has not run yet on this node.
// prev, if not nil, is its status from an earlier run of the node: restart
// count, last state and image carry over; a finished init container stays
// finished; a running one becomes Unknown until re-attached.
func New(c *corev1.Container, init bool, prev *corev1.ContainerStatus) *Record {
	r := &Record{
		name: c.Name, init: init, image: c.Image,
		sidecar: init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways,
	}
	r.waiting.Reason = ReasonContainerCreating
	if init {
		r.waiting.Reason = ReasonPodInitializing
	}
	if prev == nil {
		return r
	}
	r.restarts = prev.RestartCount
	r.last = prev.LastTerminationState.Terminated.DeepCopy()
	r.imageID = prev.ImageID
	switch {
	case prev.State.Running != nil:
		r.state = Unknown
		r.startedAt = prev.State.Running.StartedAt.Time
	case init && !r.sidecar && prev.State.Terminated != nil && prev.State.Terminated.ExitCode == 0:
		r.state = Exited // init already done
		r.terminated = prev.State.Terminated.DeepCopy()
	}
	return r
}

// Name is the container's name.
func (r *Record) Name() string { return r.name }

// Init reports an init container.
func (r *Record) Init() bool { return r.init }

// Sidecar reports an init container with restartPolicy Always.
func (r *Record) Sidecar() bool { return r.sidecar }

func (r *Record) refuse(transition string) error {
	return fmt.Errorf("container %s: %s while %s: %w", r.name, transition, r.state, ErrInvalidTransition)
}

// Wait shows why no instance runs. From Exited it means a restart is
// coming: the exit becomes the last state.
func (r *Record) Wait(reason, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case Running:
		return r.refuse("wait")
	case Exited:
		r.last, r.terminated = r.terminated, nil
		r.restartNext = true
	}
	r.state = Waiting
	r.waiting = corev1.ContainerStateWaiting{Reason: reason, Message: message}
	r.started, r.ready = false, false
	return nil
}

// Instance is the number the next instance will have (the restart count it
// will show), or the running instance's.
func (r *Record) Instance() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.instanceLocked()
}

func (r *Record) instanceLocked() int32 {
	if r.state == Waiting && r.restartNext {
		return r.restarts + 1
	}
	if r.state == Exited {
		return r.restarts + 1
	}
	return r.restarts
}

// Start records that instance started at startedAt in the VM vmID. The
// restart count rises when a new instance starts, as the kubelet's does.
func (r *Record) Start(instance int32, vmID string, startedAt time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case Waiting, Exited:
	default:
		return r.refuse("start")
	}
	if want := r.instanceLocked(); instance != want {
		return fmt.Errorf("container %s: start instance %d, want %d: %w", r.name, instance, want, ErrInvalidTransition)
	}
	if r.state == Exited {
		r.last = r.terminated
	}
	if r.state == Exited || r.restartNext {
		r.restarts++
	}
	r.state, r.restartNext, r.terminated = Running, false, nil
	r.startedAt, r.vmID = startedAt, vmID
	r.started, r.ready = false, false
	return nil
}

// Reattach resumes a container restored as running whose process outlived
// a restart of the node.
func (r *Record) Reattach(vmID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != Unknown {
		return r.refuse("reattach")
	}
	r.state, r.vmID = Running, vmID
	return nil
}

// Exit records how the running instance ended. From Unknown: it ended
// while the node was away.
func (r *Record) Exit(t *corev1.ContainerStateTerminated) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case Running, Unknown:
	default:
		return r.refuse("exit")
	}
	if t.StartedAt.IsZero() {
		t.StartedAt = metav1.NewTime(r.startedAt)
	}
	if t.ContainerID == "" {
		t.ContainerID = ContainerID(r.vmID, r.restarts)
	}
	r.state, r.terminated = Exited, t
	r.started, r.ready = false, false
	return nil
}

// FailStart records an instance that was created but could not start
// (the kubelet's StartError): it counts as an instance that exited.
func (r *Record) FailStart(vmID string, t *corev1.ContainerStateTerminated) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != Waiting {
		return r.refuse("fail start")
	}
	if r.restartNext {
		r.restarts++
		r.restartNext = false
	}
	r.vmID = vmID
	if t.ContainerID == "" {
		t.ContainerID = ContainerID(vmID, r.restarts)
	}
	r.state, r.terminated = Exited, t
	return nil
}

// Lose ends a container that has no exit to record when its pod
// terminates; an exited one keeps its exit (and Lose reports false).
func (r *Record) Lose(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == Exited {
		return false
	}
	r.state = Exited
	r.terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: ReasonStatusUnknown,
		Message: "The container could not be located when the pod was terminated", FinishedAt: metav1.NewTime(now)}
	r.started, r.ready = false, false
	return true
}

// SetStarted marks instance as started (its startup probe passed, or it
// has none). A result for an instance that no longer runs is refused.
func (r *Record) SetStarted(instance int32) (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != Running || r.restarts != instance {
		return false, fmt.Errorf("container %s: started result for instance %d while %s (instance %d): %w", r.name, instance, r.state, r.restarts, ErrInvalidTransition)
	}
	changed = !r.started
	r.started = true
	return changed, nil
}

// SetReady records a readiness result for instance.
func (r *Record) SetReady(instance int32, ready bool) (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != Running || r.restarts != instance {
		return false, fmt.Errorf("container %s: readiness result for instance %d while %s (instance %d): %w", r.name, instance, r.state, r.restarts, ErrInvalidTransition)
	}
	changed = r.ready != ready
	r.ready = ready
	return changed, nil
}

// SetImage records the image the next instance runs.
func (r *Record) SetImage(image, imageID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.image, r.imageID = image, imageID
}

// Snapshot is a consistent copy of a Record.
type Snapshot struct {
	Name    string
	Init    bool
	Sidecar bool
	State   State
	// Instance is the running (or last) instance: its restart count.
	Instance  int32
	StartedAt time.Time
	Started   bool
	Ready     bool
	// Terminated is the last exit while State is Exited.
	Terminated *corev1.ContainerStateTerminated
	// HasRun: an earlier instance exited (lastState is set).
	HasRun bool
	// Status is the kubelet's ContainerStatus.
	Status corev1.ContainerStatus
}

// Succeeded reports an exited container whose last instance exited 0.
func (s Snapshot) Succeeded() bool {
	return s.State == Exited && s.Terminated != nil && s.Terminated.ExitCode == 0
}

// Snapshot copies the record.
func (r *Record) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{
		Name: r.name, Init: r.init, Sidecar: r.sidecar, State: r.state, Instance: r.restarts,
		StartedAt: r.startedAt, Started: r.started, Ready: r.ready, HasRun: r.last != nil,
	}
	started := r.started
	st := corev1.ContainerStatus{
		Name: r.name, Image: r.image, ImageID: r.imageID, RestartCount: r.restarts,
		Ready: r.ready, Started: &started,
	}
	switch r.state {
	case Running, Unknown:
		st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(r.startedAt)}
		st.ContainerID = ContainerID(r.vmID, r.restarts)
	case Exited:
		s.Terminated = r.terminated.DeepCopy()
		st.State.Terminated = r.terminated.DeepCopy()
		st.ContainerID = r.terminated.ContainerID
	default:
		w := r.waiting
		st.State.Waiting = &w
	}
	if r.last != nil {
		st.LastTerminationState.Terminated = r.last.DeepCopy()
	}
	s.Status = st
	return s
}

// ContainerID names instance restart of the container in VM vmID.
func ContainerID(vmID string, restart int32) string {
	if vmID == "" {
		return ""
	}
	return fmt.Sprintf("applevm://%s-%d", vmID, restart)
}
