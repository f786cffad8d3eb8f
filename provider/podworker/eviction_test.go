package podworker

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEvictionMessage(t *testing.T) {
	mi := func(n int64) uint64 { return uint64(n) << 20 }
	limit := func(s string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(s)}}
	}
	size := resource.MustParse("8Mi")
	pod := func() *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "a", Resources: limit("16Mi")}, {Name: "b", Resources: limit("16Mi")}},
			Volumes: []corev1.Volume{
				{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &size}}},
				{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			},
		}}
	}
	sidecar := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		pod  func() *corev1.Pod
		u    storageUsage
		want string
	}{{
		name: "within every limit",
		pod:  pod,
		u:    storageUsage{Containers: map[string]containerUsage{"a": {mi(10), mi(5)}, "b": {mi(1), 0}}, Volumes: map[string]uint64{"shared": mi(8)}},
	}, {
		name: "a shared emptyDir past its sizeLimit",
		pod:  pod,
		u:    storageUsage{Volumes: map[string]uint64{"shared": mi(8) + 1}},
		want: `Usage of EmptyDir volume "shared" exceeds the limit "8Mi". `,
	}, {
		name: "a capped disk is exact: its measure never evicts",
		pod:  pod,
		u:    storageUsage{Volumes: map[string]uint64{"shared": mi(9)}, Capped: map[string]bool{"shared": true}},
	}, {
		name: "a Memory emptyDir is not local storage",
		pod:  pod,
		u:    storageUsage{Volumes: map[string]uint64{"mem": mi(100)}},
	}, {
		name: "the pod's total counts layers, logs and emptyDirs against the sum of limits",
		pod:  pod,
		u: storageUsage{Containers: map[string]containerUsage{"a": {mi(10), mi(4)}, "b": {mi(10), mi(2)}},
			Volumes: map[string]uint64{"shared": mi(7)}, Capped: map[string]bool{"shared": true}},
		want: "Pod ephemeral local storage usage exceeds the total limit of containers 32Mi. ",
	}, {
		name: "a container's layer and logs past its own limit",
		pod:  pod,
		u:    storageUsage{Containers: map[string]containerUsage{"a": {mi(12), mi(4) + 1}}},
		want: `Container a exceeded its local ephemeral storage limit "16Mi". `,
	}, {
		name: "exactly at the limit stays",
		pod:  pod,
		u:    storageUsage{Containers: map[string]containerUsage{"a": {mi(12), mi(4)}}},
	}, {
		name: "emptyDir first, as the kubelet checks it first",
		pod:  pod,
		u:    storageUsage{Containers: map[string]containerUsage{"a": {mi(40), 0}}, Volumes: map[string]uint64{"shared": mi(9)}},
		want: `Usage of EmptyDir volume "shared" exceeds the limit "8Mi". `,
	}, {
		name: "no limits: nothing to enforce",
		pod: func() *corev1.Pod {
			return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}},
				Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
		},
		u: storageUsage{Containers: map[string]containerUsage{"a": {mi(1000), mi(1000)}}, Volumes: map[string]uint64{"d": mi(1000)}},
	}, {
		name: "one container's limit is the pod's: an emptyDir fills it",
		pod: func() *corev1.Pod {
			return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Resources: limit("16Mi")}, {Name: "nolimit"}},
				Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
		},
		u:    storageUsage{Containers: map[string]containerUsage{"a": {mi(1), 0}}, Volumes: map[string]uint64{"d": mi(20)}},
		want: "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi. ",
	}, {
		name: "a big init container's limit is the pod's, sidecars count with the apps",
		pod: func() *corev1.Pod {
			return &corev1.Pod{Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "side", Resources: limit("4Mi"), RestartPolicy: &sidecar}, {Name: "init", Resources: limit("64Mi")}},
				Containers:     []corev1.Container{{Name: "a", Resources: limit("16Mi")}},
				Volumes:        []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
		},
		u:    storageUsage{Volumes: map[string]uint64{"d": mi(69)}},
		want: "Pod ephemeral local storage usage exceeds the total limit of containers 68Mi. ",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := evictionMessage(tt.pod(), tt.u); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
