package podworker

import (
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/vk-applevm/vk-applevm/container"
)

// DefaultEmptyDirDiskBytes is the size of the disk of an emptyDir without
// sizeLimit that only one container mounts: the runtime's default volume
// disk, as the CLI's anonymous volume gets. The pod's ephemeral-storage
// limit still counts what it holds (eviction).
const DefaultEmptyDirDiskBytes = container.DefaultVolumeDiskBytes

// emptyDirOnDisk tells whether a disk-medium emptyDir gets a disk of its
// own: when exactly one container of the pod (init or app) mounts it.
// Several containers live in several VMs, which only a share reaches.
func emptyDirOnDisk(pod *corev1.Pod, v *corev1.Volume) bool {
	if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
		return false
	}
	users := 0
	count := func(cs []corev1.Container) {
		for i := range cs {
			for _, m := range cs[i].VolumeMounts {
				if m.Name == v.Name {
					users++
					break
				}
			}
		}
	}
	count(pod.Spec.InitContainers)
	count(pod.Spec.Containers)
	return users == 1
}

// emptyDirDiskSize is the disk size of an emptyDir on its own disk: its
// sizeLimit, an exact cap (writes past it fail with ENOSPC where the
// kubelet would evict), else the default.
func emptyDirDiskSize(v *corev1.Volume) uint64 {
	if l := v.EmptyDir.SizeLimit; l != nil && l.Sign() > 0 {
		return uint64(l.Value())
	}
	return DefaultEmptyDirDiskBytes
}

// Where a pod's emptyDirs live under its directory: shared ones where the
// kubelet keeps them, disk images beside.
func emptyDirSharePath(podDir, name string) string {
	return filepath.Join(podDir, "volumes", "kubernetes.io~empty-dir", name)
}

func emptyDirDiskPath(podDir, name string) string {
	return filepath.Join(podDir, "volumes", "vk-applevm.io~empty-dir-disk", name+".ext4")
}
