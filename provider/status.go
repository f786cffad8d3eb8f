package provider

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Container state reasons, as the kubelet reports them.
const (
	reasonContainerCreating   = "ContainerCreating"
	reasonPodInitializing     = "PodInitializing"
	reasonErrImagePull        = "ErrImagePull"
	reasonImagePullBackOff    = "ImagePullBackOff"
	reasonErrImageNeverPull   = "ErrImageNeverPull"
	reasonCrashLoopBackOff    = "CrashLoopBackOff"
	reasonCreateConfigError   = "CreateContainerConfigError"
	reasonCreateError         = "CreateContainerError"
	reasonRunContainerError   = "RunContainerError"
	reasonCompleted           = "Completed"
	reasonError               = "Error"
	reasonOOMKilled           = "OOMKilled"
	reasonContainerStatusLost = "ContainerStatusUnknown"
)

// ctrState is the provider's record of one container of a pod: exactly one
// of Waiting, Running and Terminated is set.
type ctrState struct {
	Name    string
	Init    bool
	Sidecar bool // an init container with restartPolicy Always
	Image   string
	ImageID string
	// SandboxID is the container's VM.
	SandboxID    string
	RestartCount int32
	Waiting      *corev1.ContainerStateWaiting
	Running      *corev1.ContainerStateRunning
	Terminated   *corev1.ContainerStateTerminated
	LastState    *corev1.ContainerStateTerminated
	Ready        bool
	Started      bool
	// restartPending: the instance exited and will be restarted.
	restartPending bool
}

func (c *ctrState) setWaiting(reason, message string) {
	c.Waiting, c.Running, c.Terminated = &corev1.ContainerStateWaiting{Reason: reason, Message: message}, nil, nil
	c.Ready = false
}

func (c *ctrState) setRunning(started time.Time) {
	c.Waiting, c.Running, c.Terminated = nil, &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}, nil
}

func (c *ctrState) setTerminated(t *corev1.ContainerStateTerminated) {
	c.Waiting, c.Running, c.Terminated = nil, nil, t
	c.Ready, c.Started = false, false
}

// succeeded reports a terminated container that exited 0.
func (c *ctrState) succeeded() bool { return c.Terminated != nil && c.Terminated.ExitCode == 0 }

// containerID names the current (or last) instance of a container.
func containerID(sandboxID string, restart int32) string {
	if sandboxID == "" {
		return ""
	}
	return fmt.Sprintf("applevm://%s-%d", sandboxID, restart)
}

func (c *ctrState) status() corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name:         c.Name,
		Image:        c.Image,
		ImageID:      c.ImageID,
		RestartCount: c.RestartCount,
		Ready:        c.Ready,
		Started:      &c.Started,
	}
	switch {
	case c.Running != nil:
		s.State.Running = c.Running.DeepCopy()
		s.ContainerID = containerID(c.SandboxID, c.RestartCount)
	case c.Terminated != nil:
		s.State.Terminated = c.Terminated.DeepCopy()
		s.ContainerID = c.Terminated.ContainerID
	default:
		w := c.Waiting
		if w == nil {
			w = &corev1.ContainerStateWaiting{Reason: reasonContainerCreating}
		}
		s.State.Waiting = w.DeepCopy()
	}
	if c.LastState != nil {
		s.LastTerminationState.Terminated = c.LastState.DeepCopy()
	}
	return s
}

// podMeta is what the status needs besides the containers.
type podMeta struct {
	podIP, hostIP string
	startTime     time.Time
	// sandboxReady: at least one of the pod's VMs is up.
	sandboxReady bool
	// terminal overrides the computed phase (deletion, deadline, rejection).
	phase           corev1.PodPhase
	reason, message string
}

// buildStatus computes the pod's status in the kubelet's terms from the
// container records; prev supplies conditions' transition times and the
// scheduler's PodScheduled condition.
func buildStatus(pod *corev1.Pod, inits, apps []*ctrState, meta podMeta, now time.Time) corev1.PodStatus {
	st := corev1.PodStatus{
		Phase:    meta.phase,
		Reason:   meta.reason,
		Message:  meta.message,
		HostIP:   meta.hostIP,
		QOSClass: pod.Status.QOSClass,
	}
	if st.Phase == "" {
		st.Phase = podPhase(pod.Spec.RestartPolicy, inits, apps)
	}
	if meta.hostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: meta.hostIP}}
	}
	if meta.podIP != "" {
		st.PodIP = meta.podIP
		st.PodIPs = []corev1.PodIP{{IP: meta.podIP}}
	}
	if !meta.startTime.IsZero() {
		t := metav1.NewTime(meta.startTime)
		st.StartTime = &t
	}
	for _, c := range inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status())
	}
	for _, c := range apps {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status())
	}

	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	var conds []corev1.PodCondition
	add := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		conds = append(conds, c)
	}
	add(corev1.PodReadyToStartContainers, meta.sandboxReady && !terminal, "", "")

	var notInit []string
	for _, c := range inits {
		if c.Sidecar {
			if !c.Started {
				notInit = append(notInit, c.Name)
			}
		} else if !c.succeeded() {
			notInit = append(notInit, c.Name)
		}
	}
	initialized := len(notInit) == 0
	if !initialized && terminal {
		// A pod that ended before finishing init stays not initialized.
		add(corev1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))
	} else {
		add(corev1.PodInitialized, initialized, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))
	}

	var unready []string
	for _, c := range inits {
		if c.Sidecar && !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	for _, c := range apps {
		if !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	ready := len(unready) == 0 && initialized && !terminal
	reason, msg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		reason, msg = "PodCompleted", ""
	}
	add(corev1.ContainersReady, ready, reason, msg)
	gatesOK, gateMsg := readinessGates(pod)
	if ready && !gatesOK {
		add(corev1.PodReady, false, "ReadinessGatesNotReady", gateMsg)
	} else {
		add(corev1.PodReady, ready, reason, msg)
	}

	// Keep conditions others own (PodScheduled, readiness gates, ...).
	mine := map[corev1.PodConditionType]bool{}
	for _, c := range conds {
		mine[c.Type] = true
	}
	for _, c := range pod.Status.Conditions {
		if !mine[c.Type] {
			conds = append(conds, c)
		}
	}
	for i := range conds {
		conds[i].LastTransitionTime = metav1.NewTime(now)
		for _, p := range pod.Status.Conditions {
			if p.Type == conds[i].Type && p.Status == conds[i].Status {
				conds[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	sort.SliceStable(conds, func(i, j int) bool { return condOrder(conds[i].Type) < condOrder(conds[j].Type) })
	st.Conditions = conds
	return st
}

func condOrder(t corev1.PodConditionType) int {
	switch t {
	case corev1.PodReadyToStartContainers:
		return 0
	case corev1.PodInitialized:
		return 1
	case corev1.PodReady:
		return 2
	case corev1.ContainersReady:
		return 3
	case corev1.PodScheduled:
		return 4
	}
	return 5
}

// readinessGates reports whether every readiness gate's condition is True.
func readinessGates(pod *corev1.Pod) (bool, string) {
	var missing []string
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
				ok = true
			}
		}
		if !ok {
			missing = append(missing, string(g.ConditionType))
		}
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", strings.Join(missing, ", "))
	}
	return true, ""
}

// podPhase follows the kubelet's getPhase: init containers gate Pending;
// a waiting container that ran before counts as stopped (restarting).
func podPhase(policy corev1.RestartPolicy, inits, apps []*ctrState) corev1.PodPhase {
	for _, c := range inits {
		if c.Sidecar {
			continue
		}
		if c.succeeded() {
			continue
		}
		if c.Terminated != nil && policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range apps {
		switch {
		case c.Running != nil:
			running++
		case c.Terminated != nil:
			stopped++
			if c.Terminated.ExitCode == 0 {
				succeeded++
			}
		default:
			if c.LastState != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if policy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}
