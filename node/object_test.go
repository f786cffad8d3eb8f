package node

import (
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.NodeName = "mac-mini"
	cfg.Version = "1.2.3"
	cfg.Provider.Root = t.TempDir()
	cfg.Provider.Runtime = &stubRuntime{}
	if err := cfg.complete(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNodeObject(t *testing.T) {
	cfg := testConfig(t)
	cfg.Labels = map[string]string{"topology.kubernetes.io/zone": "desk", "type": "virtual-kubelet"}
	facts := hostFacts{
		IPs:      []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("192.0.2.11"), net.ParseIP("fd00::10")},
		Hostname: "mac-mini.local",
		OS:       hostinfo.OS{Image: "macOS 15.1", KernelVersion: "Darwin 24.1.0", MachineID: "m", BootID: "b"},
	}
	n := newNodeObject(&cfg, facts, 10250)
	want := map[string]string{
		"type": "virtual-kubelet", "kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
		"kubernetes.io/hostname": "mac-mini", "node.kubernetes.io/instance-type": "applevm", "topology.kubernetes.io/zone": "desk",
	}
	if len(n.Labels) != len(want) {
		t.Errorf("labels = %v", n.Labels)
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0] != (corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "applevm", Effect: corev1.TaintEffectNoSchedule}) {
		t.Errorf("taints = %v", n.Spec.Taints)
	}
	addrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeInternalIP, Address: "fd00::10"},
		{Type: corev1.NodeHostName, Address: "mac-mini.local"}}
	if len(n.Status.Addresses) != len(addrs) {
		t.Fatalf("addresses = %v, want %v", n.Status.Addresses, addrs)
	}
	for i := range addrs {
		if n.Status.Addresses[i] != addrs[i] {
			t.Errorf("address %d = %v, want %v", i, n.Status.Addresses[i], addrs[i])
		}
	}
	ni := n.Status.NodeInfo
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 || ni.KubeletVersion != "v1.37.2-vk-applevm-1.2.3" ||
		ni.ContainerRuntimeVersion != "applevm://1.2.3" || ni.OSImage != "macOS 15.1" || ni.KernelVersion != "Darwin 24.1.0" ||
		ni.OperatingSystem != "linux" || ni.Architecture != runtime.GOARCH || ni.MachineID != "m" || ni.BootID != "b" {
		t.Errorf("status = %+v", n.Status)
	}

	cfg.Taint = ""
	if n := newNodeObject(&cfg, facts, 10250); len(n.Spec.Taints) != 0 {
		t.Errorf("Taint \"\" must disable the taint: %v", n.Spec.Taints)
	}
}

func TestCapacityMinusReserve(t *testing.T) {
	cfg := testConfig(t)
	capacity, alloc := resources(&cfg, hostResources{CPUs: 8, MemoryBytes: 16 << 30, DiskBytes: 100 << 30})
	check := func(l corev1.ResourceList, name corev1.ResourceName, want string) {
		t.Helper()
		q := l[name]
		if w := resource.MustParse(want); q.Cmp(w) != 0 {
			t.Errorf("%s = %s, want %s", name, q.String(), want)
		}
	}
	check(capacity, corev1.ResourceCPU, "8")
	check(capacity, corev1.ResourceMemory, "16Gi")
	check(capacity, corev1.ResourceEphemeralStorage, "100Gi")
	check(capacity, corev1.ResourcePods, "110")
	check(alloc, corev1.ResourceCPU, "7500m")
	// 16 Gi - 2 Gi reserved - the 100 Mi eviction threshold.
	check(alloc, corev1.ResourceMemory, "14236Mi")
	check(alloc, corev1.ResourceEphemeralStorage, "90Gi")
	check(alloc, corev1.ResourcePods, "110")

	cfg.Reserved = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi")}
	_, alloc = resources(&cfg, hostResources{CPUs: 8, MemoryBytes: 16 << 30, DiskBytes: 100 << 30})
	check(alloc, corev1.ResourceCPU, "0")
	check(alloc, corev1.ResourceMemory, "0")
}

func TestParseTaint(t *testing.T) {
	for in, want := range map[string]*corev1.Taint{
		"a/b=c:NoSchedule":    {Key: "a/b", Value: "c", Effect: corev1.TaintEffectNoSchedule},
		"k:NoExecute":         {Key: "k", Effect: corev1.TaintEffectNoExecute},
		"k=:PreferNoSchedule": {Key: "k", Effect: corev1.TaintEffectPreferNoSchedule},
		"":                    nil,
	} {
		got, err := parseTaint(in)
		if err != nil || (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Errorf("parseTaint(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"k=v", "k=v:Sometimes", "=v:NoSchedule"} {
		if _, err := parseTaint(bad); err == nil {
			t.Errorf("parseTaint(%q) accepted", bad)
		}
	}
}

func TestConfigComplete(t *testing.T) {
	var c Config
	err := c.complete()
	for _, want := range []string{"node name is required", "provider root and runtime are required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("zero config: error %v, want %q", err, want)
		}
	}
	if c.ListenAddr != ":10250" || c.StreamIdleTimeout.Hours() != 4 || c.StreamCreationTimeout.Seconds() != 30 || c.MaxPods != 110 || c.Version == "" {
		t.Errorf("defaults not filled: %+v", c)
	}
	c = testConfig(t)
	c.TLSCertFile = "/x.crt"
	c.ListenAddr = "10250"
	c.NodeIP = "mac"
	err = c.complete()
	for _, want := range []string{"go together", "listen address", "not an IP address"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

func TestGatherFactsWithExplicitIP(t *testing.T) {
	cfg := testConfig(t)
	cfg.NodeIP, cfg.Hostname = "10.1.2.3", "Mac-Mini"
	f, err := gatherFacts(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.IPs) != 1 || f.IPs[0].String() != "10.1.2.3" || f.Hostname != "mac-mini" || f.OS.KernelVersion == "" || f.OS.Arch != runtime.GOARCH {
		t.Fatalf("facts = %+v", f)
	}
}
