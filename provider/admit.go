package provider

import (
	"fmt"
	"strings"

	"github.com/vk-applevm/vk-applevm/provider/podnet"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// reasonUnsupported marks a pod this node cannot run; it fails at once with
// an event rather than waiting forever.
const reasonUnsupported = "UnsupportedByNode"

// unsupported lists what a VM-per-container node cannot offer.
func unsupported(pod *corev1.Pod) *podworker.Rejection {
	var why []string
	if pod.Spec.HostNetwork {
		why = append(why, "hostNetwork (every container runs in its own VM with its own network)")
	}
	if pod.Spec.HostPID {
		why = append(why, "hostPID")
	}
	if pod.Spec.HostIPC {
		why = append(why, "hostIPC")
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "DaemonSet" {
			why = append(why, fmt.Sprintf("DaemonSet pods (%s tolerates the node's taint; node agents cannot run on a VM node)", ref.Name))
		}
	}
	for _, c := range allContainers(pod) {
		if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			why = append(why, fmt.Sprintf("privileged container %q", c.Name))
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 && p.Protocol == corev1.ProtocolSCTP {
				why = append(why, fmt.Sprintf("SCTP hostPort %d of container %q (the pod network carries TCP and UDP)", p.HostPort, c.Name))
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.Projected != nil, v.DownwardAPI != nil:
		default:
			why = append(why, fmt.Sprintf("volume %q of type %s", v.Name, volumeType(v)))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return &podworker.Rejection{Reason: reasonUnsupported, Message: "Pod uses features this vk-applevm node does not support: " + strings.Join(why, "; ")}
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

func volumeType(v corev1.Volume) string {
	switch {
	case v.HostPath != nil:
		return "hostPath"
	case v.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case v.Ephemeral != nil:
		return "ephemeral"
	case v.CSI != nil:
		return "csi"
	case v.NFS != nil:
		return "nfs"
	case v.Image != nil:
		return "image"
	}
	return "other"
}

// admitLocked decides whether the node can run the pod, as the kubelet's
// admission does, before any VM exists. Pods that already have VMs (a node
// restart) are always admitted.
func (p *Provider) admitLocked(pod *corev1.Pod, hasVMs bool) *podworker.Rejection {
	if hasVMs {
		return nil
	}
	if r := unsupported(pod); r != nil {
		return r
	}
	var used podCost
	n := 0
	var holding []*corev1.Pod
	for _, o := range p.workers {
		if !o.HoldsResources() {
			continue
		}
		holding = append(holding, o.Pod())
		c := costOf(p.sizing, o.Pod(), p.cfg.VMOverheadBytes)
		used.cpuMillis += c.cpuMillis
		used.memoryBytes += c.memoryBytes
		n++
	}
	if port, taken := podnet.HostPortConflict(pod, holding); taken {
		// The kubelet's NodePorts predicate (pkg/kubelet/lifecycle).
		return &podworker.Rejection{Reason: "NodePorts", Message: fmt.Sprintf("Predicate NodePorts failed: host port %s is taken by another pod on the node", port)}
	}
	return admitResources(costOf(p.sizing, pod, p.cfg.VMOverheadBytes), used, n, p.cfg.Allocatable)
}

// podCost is what a pod takes from the node's allocatable: CPU by request
// (as the scheduler counts it) and memory by what its VMs really get.
type podCost struct {
	cpuMillis   int64
	memoryBytes uint64
}

func costOf(s podworker.Sizing, pod *corev1.Pod, overhead uint64) podCost {
	var c podCost
	// Init containers run one at a time before the app containers; count
	// the largest of them against the sum of the app containers.
	var initCPU int64
	var initMem uint64
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		sz := s.VMSizeFor(ic)
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			c.cpuMillis += requestMillis(ic)
			c.memoryBytes += sz.MemoryBytes + overhead
			continue
		}
		initCPU = max(initCPU, requestMillis(ic))
		initMem = max(initMem, sz.MemoryBytes+overhead)
	}
	for i := range pod.Spec.Containers {
		ac := &pod.Spec.Containers[i]
		c.cpuMillis += requestMillis(ac)
		c.memoryBytes += s.VMSizeFor(ac).MemoryBytes + overhead
	}
	c.cpuMillis = max(c.cpuMillis, initCPU)
	c.memoryBytes = max(c.memoryBytes, initMem)
	return c
}

func requestMillis(c *corev1.Container) int64 {
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		return q.MilliValue()
	}
	return 0
}

// admitResources checks a pod's cost against what is left, as the kubelet's
// admission does (reasons OutOfcpu, OutOfmemory, OutOfpods).
func admitResources(cost, used podCost, podsUsed int, alloc corev1.ResourceList) *podworker.Rejection {
	if maxPods, ok := alloc[corev1.ResourcePods]; ok && int64(podsUsed+1) > maxPods.Value() {
		return &podworker.Rejection{Reason: "OutOfpods", Message: fmt.Sprintf("Node didn't have enough resource: pods, used: %d, capacity: %d", podsUsed, maxPods.Value())}
	}
	if cpu, ok := alloc[corev1.ResourceCPU]; ok && cost.cpuMillis+used.cpuMillis > cpu.MilliValue() {
		return &podworker.Rejection{Reason: "OutOfcpu", Message: fmt.Sprintf("Node didn't have enough resource: cpu, requested: %d, used: %d, capacity: %d", cost.cpuMillis, used.cpuMillis, cpu.MilliValue())}
	}
	if mem, ok := alloc[corev1.ResourceMemory]; ok && cost.memoryBytes+used.memoryBytes > uint64(mem.Value()) {
		return &podworker.Rejection{Reason: "OutOfmemory", Message: fmt.Sprintf("Node didn't have enough resource: memory (VM memory including the per-VM overhead), requested: %s, used: %s, capacity: %s",
			bytesQ(cost.memoryBytes), bytesQ(used.memoryBytes), mem.String())}
	}
	return nil
}

func bytesQ(b uint64) string {
	return resource.NewQuantity(int64(b), resource.BinarySI).String()
}
