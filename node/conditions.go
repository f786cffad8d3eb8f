package node

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons and messages are the kubelet's (pkg/kubelet/nodestatus/setters.go),
// so tools that read them keep working.
func conditions(a assessment, prev []corev1.NodeCondition, now metav1.Time, cfg *Config) []corev1.NodeCondition {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "kubelet is posting ready status"}
	if len(a.notReady) > 0 {
		ready.Status, ready.Reason = corev1.ConditionFalse, "KubeletNotReady"
		ready.Message = strings.Join(a.notReady, "; ")
	}
	mem := corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"}
	if a.memPressure {
		mem.Status, mem.Reason = corev1.ConditionTrue, "KubeletHasInsufficientMemory"
		mem.Message = "kubelet has insufficient memory available: host memory available is below " + bytesString(cfg.MemoryPressureBytes)
	}
	disk := corev1.NodeCondition{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"}
	if a.diskPressure {
		disk.Status, disk.Reason = corev1.ConditionTrue, "KubeletHasDiskPressure"
		disk.Message = "kubelet has disk pressure: the state root's file system is more than " +
			strconv.Itoa(100-cfg.DiskPressurePercent) + "% full"
	}
	pid := corev1.NodeCondition{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"}
	// Each VM has its own kernel and PID space; there is no node-wide
	// pod network to be unavailable either: VMs get their IPs from the
	// node itself.
	net := corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "VMNetworkReady", Message: "every VM gets its IP from the node"}

	out := []corev1.NodeCondition{ready, mem, disk, pid, net}
	for i := range out {
		out[i].LastHeartbeatTime = now
		out[i].LastTransitionTime = now
		for _, p := range prev {
			if p.Type == out[i].Type && p.Status == out[i].Status {
				out[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	return out
}

// nodeEvents are the kubelet's event reasons for a condition becoming
// True or False (pkg/kubelet/events).
var nodeEvents = map[corev1.NodeConditionType][2]string{
	corev1.NodeReady:          {"NodeReady", "NodeNotReady"},
	corev1.NodeMemoryPressure: {"NodeHasInsufficientMemory", "NodeHasSufficientMemory"},
	corev1.NodeDiskPressure:   {"NodeHasDiskPressure", "NodeHasNoDiskPressure"},
}

// transitions lists {type, reason, message} events for the conditions whose
// status changed from prev to cur (all of them on the first round).
func transitions(prev, cur []corev1.NodeCondition) [][3]string {
	var out [][3]string
	for _, c := range cur {
		reasons, ok := nodeEvents[c.Type]
		if !ok {
			continue
		}
		changed := true
		for _, p := range prev {
			if p.Type == c.Type && p.Status == c.Status {
				changed = false
			}
		}
		if !changed {
			continue
		}
		reason := reasons[1]
		if c.Status == corev1.ConditionTrue {
			reason = reasons[0]
		}
		out = append(out, [3]string{corev1.EventTypeNormal, reason, "Node status is now: " + reason + ": " + c.Message})
	}
	return out
}

// sameConditions compares what a push would change (not heartbeats).
func sameConditions(a, b []corev1.NodeCondition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason || a[i].Message != b[i].Message {
			return false
		}
	}
	return true
}

func sameResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		if o, ok := b[k]; !ok || o.Cmp(q) != 0 {
			return false
		}
	}
	return true
}
