package podworker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// Labels the provider puts on every VM so a restarted node can tell which
// pod and container a VM belongs to.
const (
	LabelNamespace = "vk-applevm.io/pod-namespace"
	LabelPodName   = "vk-applevm.io/pod-name"
	LabelPodUID    = "vk-applevm.io/pod-uid"
	LabelContainer = "vk-applevm.io/container"
)

// VMID derives a container's VM id from the pod UID and container
// name: stable across node restarts, 12 hex characters (vm.Spec.ID).
func VMID(podUID, containerName string) string {
	sum := sha256.Sum256([]byte(podUID + "/" + containerName))
	return hex.EncodeToString(sum[:6])
}

// PodDirName is the kubelet's per-pod directory name under pods/.
func PodDirName(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)
}

// Sizing turns a container's resources into a VM size.
type Sizing struct {
	// DefaultMemory is the VM memory for a container without a memory
	// request or limit.
	DefaultMemory uint64
	// MaxCPUs caps vCPUs at what the host has.
	MaxCPUs int
}

// VMSize is the size of one container's VM.
type VMSize struct {
	CPUs        int
	MemoryBytes uint64
	LimitMemory bool
	CPUMillis   uint32
	// MemoryRequestBytes is the container's memory request: what a memory
	// balloon leaves the guest at least (container.VMConfig).
	MemoryRequestBytes uint64
}

// VMSizeFor: vCPUs are the CPU limit (else request) rounded up, at least 1;
// memory is the memory limit (else request, else the default). A memory
// limit is also enforced on the container's cgroup inside the VM so the
// kubelet's OOMKilled semantics hold.
func (s Sizing) VMSizeFor(c *corev1.Container) VMSize {
	var out VMSize
	cpu, ok := c.Resources.Limits[corev1.ResourceCPU]
	if ok {
		out.CPUMillis = uint32(cpu.MilliValue())
	} else {
		cpu, ok = c.Resources.Requests[corev1.ResourceCPU]
	}
	out.CPUs = 1
	if ok {
		out.CPUs = int(max((cpu.MilliValue()+999)/1000, 1))
	}
	if s.MaxCPUs > 0 && out.CPUs > s.MaxCPUs {
		out.CPUs = s.MaxCPUs
	}
	if mem, ok := c.Resources.Requests[corev1.ResourceMemory]; ok {
		out.MemoryRequestBytes = uint64(mem.Value())
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		out.MemoryBytes, out.LimitMemory = uint64(mem.Value()), true
	} else if mem, ok := c.Resources.Requests[corev1.ResourceMemory]; ok {
		out.MemoryBytes = uint64(mem.Value())
	} else {
		out.MemoryBytes = s.DefaultMemory
	}
	return out
}

// processArgs applies Kubernetes' command/args rules over the image's
// Entrypoint and Cmd, expanding $(VAR) from the container environment.
func processArgs(c *corev1.Container, img vmruntime.ImageInfo, vars []string) ([]string, error) {
	lookup := env.Lookup(vars)
	exp := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = env.Expand(s, lookup)
		}
		return out
	}
	var args []string
	switch {
	case len(c.Command) > 0:
		args = append(exp(c.Command), exp(c.Args)...)
	case len(c.Args) > 0:
		args = append(append([]string{}, img.Entrypoint...), exp(c.Args)...)
	default:
		args = append(append([]string{}, img.Entrypoint...), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, env.ConfigErrorf("no command specified: the image has no entrypoint or cmd and the container sets no command")
	}
	return args, nil
}

// processUser picks the identity: securityContext (container, then pod)
// over the image's USER; runAsNonRoot is checked where it can be decided.
func processUser(pod *corev1.Pod, c *corev1.Container, img vmruntime.ImageInfo) (container.ProcessConfig, error) {
	var p container.ProcessConfig
	var uid, gid *int64
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
		for _, g := range psc.SupplementalGroups {
			p.AdditionalGIDs = append(p.AdditionalGIDs, uint32(g))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
	}
	if uid != nil {
		u := uint32(*uid)
		p.UID = &u
	}
	if gid != nil {
		g := uint32(*gid)
		p.GID = &g
	}
	if p.UID == nil {
		p.User = img.User
	}
	if nonRoot != nil && *nonRoot {
		switch {
		case p.UID != nil && *p.UID == 0:
			return p, env.ConfigErrorf("container has runAsNonRoot and runAsUser 0 (root)")
		case p.UID == nil:
			name, _, _ := strings.Cut(img.User, ":")
			n, err := strconv.ParseUint(name, 10, 32)
			if name == "" || name == "root" || (err == nil && n == 0) {
				return p, env.ConfigErrorf("container has runAsNonRoot and image will run as root")
			}
			if err != nil {
				return p, env.ConfigErrorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root", name)
			}
		}
	}
	return p, nil
}

// mountsFor resolves a container's volumeMounts against the pod's volumes.
// Files volumes get their content later from the volume manager.
func mountsFor(pod *corev1.Pod, c *corev1.Container, podDir string) ([]container.Mount, error) {
	vols := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var out []container.Mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, env.ConfigErrorf("volumeMount %q: no volume of that name in the pod", vm.Name)
		}
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			return nil, env.ConfigErrorf("volumeMount %q: subPath is not supported on this node", vm.Name)
		}
		m := container.Mount{Destination: vm.MountPath, ReadOnly: vm.ReadOnly}
		switch {
		case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
			m.Kind = container.MountTmpfs
			if v.EmptyDir.SizeLimit != nil {
				m.SizeBytes = uint64(v.EmptyDir.SizeLimit.Value())
			}
		case emptyDirOnDisk(pod, v):
			m.Kind = container.MountDisk
			m.HostPath = emptyDirDiskPath(podDir, v.Name)
			m.SizeBytes = emptyDirDiskSize(v)
		case v.EmptyDir != nil:
			m.Kind = container.MountShare
			m.HostPath = emptyDirSharePath(podDir, v.Name)
		case v.ConfigMap != nil, v.Secret != nil, v.Projected != nil, v.DownwardAPI != nil:
			m.Kind = container.MountFiles
			m.Volume = v.Name
			m.ReadOnly = true
		default:
			return nil, env.ConfigErrorf("volume %q: unsupported volume type", v.Name)
		}
		out = append(out, m)
	}
	return out, nil
}
