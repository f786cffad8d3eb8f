// Package status turns a pod's container records into the kubelet's pod
// status and pushes every change to virtual-kubelet. Generate is the
// computation (phase, conditions, container statuses); Manager is the one
// place statuses are stored and pushed from, as the kubelet's status
// manager is.
package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Input is what a pod's status is computed from.
type Input struct {
	// Pod is the latest pod object: its spec, and in its status the
	// conditions others own (PodScheduled, readiness gates) and QOSClass.
	Pod         *corev1.Pod
	Inits, Apps []ctrstate.Snapshot
	PodIP       string
	HostIP      string
	StartTime   time.Time
	// VMReady: at least one of the pod's VMs is up
	// (PodReadyToStartContainers).
	VMReady bool
	// Phase, Reason and Message override the computed phase (rejection,
	// deadline, termination).
	Phase           corev1.PodPhase
	Reason, Message string
}

// MaxPodTerminationMessageBytes is what the termination messages of one pod
// may take in its status, shared equally by its containers (the kubelet's
// MaxPodTerminationMessageLogLength).
const MaxPodTerminationMessageBytes = 12 << 10

// Generate computes the pod's status in the kubelet's terms. prev gives
// the kubelet-owned conditions their transition times.
func Generate(in Input, prev *corev1.PodStatus, now time.Time) corev1.PodStatus {
	pod := in.Pod
	st := corev1.PodStatus{
		Phase:    in.Phase,
		Reason:   in.Reason,
		Message:  in.Message,
		HostIP:   in.HostIP,
		QOSClass: pod.Status.QOSClass,
	}
	if st.Phase == "" {
		st.Phase = Phase(pod.Spec.RestartPolicy, in.Inits, in.Apps)
	}
	if in.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: in.HostIP}}
	}
	if in.PodIP != "" {
		st.PodIP = in.PodIP
		st.PodIPs = []corev1.PodIP{{IP: in.PodIP}}
	}
	if !in.StartTime.IsZero() {
		t := metav1.NewTime(in.StartTime)
		st.StartTime = &t
	}
	perContainer := MaxPodTerminationMessageBytes
	if n := len(in.Inits) + len(in.Apps); n > 0 {
		perContainer /= n
	}
	for _, c := range in.Inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, capMessages(c.Status, perContainer))
	}
	for _, c := range in.Apps {
		st.ContainerStatuses = append(st.ContainerStatuses, capMessages(c.Status, perContainer))
	}
	st.Conditions = conditions(in, st.Phase, prev, now)
	return st
}

// capMessages truncates termination messages to the container's share of
// the pod's budget, as the kubelet's status manager does.
func capMessages(s corev1.ContainerStatus, max int) corev1.ContainerStatus {
	s = *s.DeepCopy()
	for _, t := range []*corev1.ContainerStateTerminated{s.State.Terminated, s.LastTerminationState.Terminated} {
		if t != nil && len(t.Message) > max {
			t.Message = t.Message[:max]
		}
	}
	return s
}

// kubeletConditions are the condition types Generate owns; others are kept
// from the pod object.
var kubeletConditions = map[corev1.PodConditionType]bool{
	corev1.PodReadyToStartContainers: true, corev1.PodInitialized: true,
	corev1.ContainersReady: true, corev1.PodReady: true,
}

func conditions(in Input, phase corev1.PodPhase, prev *corev1.PodStatus, now time.Time) []corev1.PodCondition {
	pod := in.Pod
	terminal := phase == corev1.PodSucceeded || phase == corev1.PodFailed
	var conds []corev1.PodCondition
	add := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		conds = append(conds, c)
	}
	add(corev1.PodReadyToStartContainers, in.VMReady && !terminal, "", "")

	var notInit []string
	for _, c := range in.Inits {
		if (c.Sidecar && !c.Started) || (!c.Sidecar && !c.Succeeded()) {
			notInit = append(notInit, c.Name)
		}
	}
	initialized := len(notInit) == 0
	add(corev1.PodInitialized, initialized, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))

	var unready []string
	for _, c := range in.Inits {
		if c.Sidecar && !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	for _, c := range in.Apps {
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
	if gatesOK, gateMsg := readinessGates(pod); ready && !gatesOK {
		add(corev1.PodReady, false, "ReadinessGatesNotReady", gateMsg)
	} else {
		add(corev1.PodReady, ready, reason, msg)
	}

	for _, c := range pod.Status.Conditions {
		if !kubeletConditions[c.Type] {
			conds = append(conds, c)
		}
	}
	for i := range conds {
		if !kubeletConditions[conds[i].Type] {
			continue
		}
		conds[i].LastTransitionTime = metav1.NewTime(now)
		if prev == nil {
			continue
		}
		for _, p := range prev.Conditions {
			if p.Type == conds[i].Type && p.Status == conds[i].Status {
				conds[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	sort.SliceStable(conds, func(i, j int) bool { return condOrder(conds[i].Type) < condOrder(conds[j].Type) })
	return conds
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

// Phase follows the kubelet's getPhase: init containers gate Pending; a
// waiting container that ran before counts as stopped (restarting).
func Phase(policy corev1.RestartPolicy, inits, apps []ctrstate.Snapshot) corev1.PodPhase {
	for _, c := range inits {
		if c.Sidecar || c.Succeeded() {
			continue
		}
		if c.State == ctrstate.Exited && policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range apps {
		switch c.State {
		case ctrstate.Running, ctrstate.Unknown:
			running++
		case ctrstate.Exited:
			stopped++
			if c.Succeeded() {
				succeeded++
			}
		default:
			if c.HasRun {
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
