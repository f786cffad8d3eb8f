package node

import (
	"fmt"
	"net"
	"runtime"
	"strings"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostFacts are the figures of the machine the node object describes.
type hostFacts struct {
	// IPs are the node's addresses, the node IP first.
	IPs      []net.IP
	Hostname string
	OS       hostinfo.OS
}

// gatherFacts reads the host: addresses, host name, OS.
func gatherFacts(cfg *Config) (hostFacts, error) {
	var f hostFacts
	if cfg.NodeIP != "" {
		f.IPs = []net.IP{net.ParseIP(cfg.NodeIP)}
	} else {
		ips, err := hostinfo.NodeIPs(cfg.Interface)
		if err != nil {
			return f, fmt.Errorf("find the node IP (set it explicitly to skip this): %w", err)
		}
		f.IPs = ips
	}
	f.Hostname = cfg.Hostname
	if f.Hostname == "" {
		h, err := hostinfo.Hostname()
		if err != nil {
			return f, fmt.Errorf("read host name: %w", err)
		}
		f.Hostname = h
	}
	f.Hostname = strings.ToLower(f.Hostname)
	o, err := hostinfo.ReadOS()
	if err != nil {
		return f, fmt.Errorf("describe host OS: %w", err)
	}
	f.OS = o
	return f, nil
}

// hostResources are the host's totals, re-read on every status round.
type hostResources struct {
	CPUs        int
	MemoryBytes uint64
	// DiskBytes is the size of the state root's file system.
	DiskBytes uint64
}

// resources computes capacity and allocatable the kubelet's way:
// allocatable = capacity - reserved - the eviction threshold.
func resources(cfg *Config, r hostResources) (capacity, allocatable corev1.ResourceList) {
	capacity = corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(r.CPUs), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(int64(r.MemoryBytes), resource.BinarySI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(r.DiskBytes), resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(cfg.MaxPods), resource.DecimalSI),
	}
	cpu := capacity.Cpu().MilliValue()
	if q, ok := cfg.Reserved[corev1.ResourceCPU]; ok {
		cpu -= q.MilliValue()
	}
	mem := int64(r.MemoryBytes) - int64(cfg.MemoryPressureBytes)
	if q, ok := cfg.Reserved[corev1.ResourceMemory]; ok {
		mem -= q.Value()
	}
	disk := int64(r.DiskBytes) - int64(r.DiskBytes)*int64(cfg.DiskPressurePercent)/100
	allocatable = corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(max(cpu, 0), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(max(mem, 0), resource.BinarySI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(max(disk, 0), resource.BinarySI),
		corev1.ResourcePods:             capacity[corev1.ResourcePods],
	}
	return capacity, allocatable
}

// nodeLabels are the node's labels: the kubelet's well-known ones, the
// virtual-kubelet type, then cfg.Labels.
func nodeLabels(cfg *Config) map[string]string {
	l := map[string]string{
		"type":                         "virtual-kubelet",
		corev1.LabelOSStable:           "linux", // pods run Linux, whatever the host is
		corev1.LabelArchStable:         runtime.GOARCH,
		corev1.LabelHostname:           cfg.NodeName,
		corev1.LabelInstanceTypeStable: InstanceType,
	}
	for k, v := range cfg.Labels {
		l[k] = v
	}
	return l
}

// nodeAddresses reports the node IP (and one address of the other family,
// if the host has one) as InternalIP, and the host name.
func nodeAddresses(f hostFacts) []corev1.NodeAddress {
	var out []corev1.NodeAddress
	if len(f.IPs) > 0 {
		out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: f.IPs[0].String()})
		first4 := f.IPs[0].To4() != nil
		for _, ip := range f.IPs[1:] {
			if (ip.To4() != nil) != first4 {
				out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
				break
			}
		}
	}
	if f.Hostname != "" {
		out = append(out, corev1.NodeAddress{Type: corev1.NodeHostName, Address: f.Hostname})
	}
	return out
}

// newNodeObject is the node as registered; status.go keeps its
// conditions, capacity and allocatable current.
func newNodeObject(cfg *Config, f hostFacts, port int32) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName, Labels: nodeLabels(cfg)},
		Status: corev1.NodeStatus{
			Addresses:       nodeAddresses(f),
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               f.OS.MachineID,
				SystemUUID:              f.OS.SystemUUID,
				BootID:                  f.OS.BootID,
				KernelVersion:           f.OS.KernelVersion,
				OSImage:                 f.OS.Image,
				ContainerRuntimeVersion: "applevm://" + cfg.Version,
				KubeletVersion:          KubernetesVersion + "-vk-applevm-" + cfg.Version,
				OperatingSystem:         "linux",
				Architecture:            runtime.GOARCH,
			},
		},
	}
	if t, _ := parseTaint(cfg.Taint); t != nil {
		n.Spec.Taints = []corev1.Taint{*t}
	}
	return n
}
