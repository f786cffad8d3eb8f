package podworker

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The kubelet's words for a pod evicted over its local storage limits
// (pkg/kubelet/eviction/helpers.go): the status reason, and the messages
// of emptyDirLimitEviction, podEphemeralStorageLimitEviction and
// containerEphemeralStorageLimitEviction (eviction_manager.go). The
// trailing space is the kubelet's.
const (
	ReasonEvicted                       = "Evicted"
	emptyDirMessageFmt                  = "Usage of EmptyDir volume %q exceeds the limit %q. "
	podEphemeralStorageMessageFmt       = "Pod ephemeral local storage usage exceeds the total limit of containers %s. "
	containerEphemeralStorageMessageFmt = "Container %s exceeded its local ephemeral storage limit %q. "
)

// storageUsage is a pod's local ephemeral storage as measured on the node,
// the parts of the kubelet's pod stats its eviction reads.
type storageUsage struct {
	// Containers holds the writable layer (Rootfs) and logs of each
	// container measured, by name.
	Containers map[string]containerUsage
	// Volumes holds the usage of each disk-medium emptyDir, by name.
	Volumes map[string]uint64
	// Capped names the volumes on a disk of their sizeLimit: they cannot
	// outgrow it (ENOSPC comes first), and their measure (the host
	// image's allocation) includes filesystem metadata, so they are left
	// out of the emptyDir check; they still count towards the pod's total.
	Capped map[string]bool
}

type containerUsage struct{ Rootfs, Logs uint64 }

// evictionMessage applies the kubelet's local storage eviction to one pod
// (localStorageEviction, in its order: emptyDir sizeLimit, the pod's
// total against the sum of its containers' limits, each container's
// writable layer and logs against its limit) and returns the message of
// the first limit broken, or "" when none is.
func evictionMessage(pod *corev1.Pod, u storageUsage) string {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.EmptyDir == nil || u.Capped[v.Name] {
			continue
		}
		size := v.EmptyDir.SizeLimit
		used, ok := u.Volumes[v.Name]
		if ok && size != nil && size.Sign() == 1 && quantity(used).Cmp(*size) > 0 {
			return fmt.Sprintf(emptyDirMessageFmt, v.Name, size.String())
		}
	}
	if limit, ok := podEphemeralLimit(pod); ok {
		var total uint64
		for _, c := range u.Containers {
			total += c.Rootfs + c.Logs
		}
		for i := range pod.Spec.Volumes {
			v := &pod.Spec.Volumes[i]
			if v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory {
				total += u.Volumes[v.Name]
			}
		}
		if quantity(total).Cmp(limit) > 0 {
			return fmt.Sprintf(podEphemeralStorageMessageFmt, limit.String())
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		limit := c.Resources.Limits.StorageEphemeral()
		used, ok := u.Containers[c.Name]
		if !ok || limit == nil || limit.Value() == 0 {
			continue
		}
		if limit.Cmp(*quantity(used.Rootfs + used.Logs)) < 0 {
			return fmt.Sprintf(containerEphemeralStorageMessageFmt, c.Name, limit.String())
		}
	}
	return ""
}

func quantity(n uint64) *resource.Quantity {
	return resource.NewQuantity(int64(n), resource.BinarySI)
}

// podEphemeralLimit is the pod's ephemeral-storage limit as the kubelet's
// resourcehelper.PodLimits makes it: the sum over the app containers and
// the sidecars (restartable init containers), or a regular init
// container's own limit when larger (init containers run one at a
// time). ok is false when no container sets one.
func podEphemeralLimit(pod *corev1.Pod) (resource.Quantity, bool) {
	var running, sidecars, initMax resource.Quantity
	found := false
	for i := range pod.Spec.Containers {
		if l, ok := pod.Spec.Containers[i].Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
			running.Add(l)
			found = true
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		l, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]
		if !ok {
			continue
		}
		found = true
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			running.Add(l)
			sidecars.Add(l)
			continue
		}
		// A regular init container runs beside the sidecars started
		// before it.
		l.Add(sidecars)
		if l.Cmp(initMax) > 0 {
			initMax = l
		}
	}
	if initMax.Cmp(running) > 0 {
		return initMax, found
	}
	return running, found
}
