package provider

import (
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/provider/podworker"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestUnsupportedFeatures(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		want string
	}{
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"hostPID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "hostPID"},
		{"hostIPC", func(p *corev1.Pod) { p.Spec.HostIPC = true }, "hostIPC"},
		{"DaemonSet", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "kube-proxy"}}
		}, "DaemonSet pods (kube-proxy"},
		{"privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
		}, `privileged container "app"`},
		{"SCTP hostPort", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolSCTP}}
		}, `SCTP hostPort 8080 of container "app"`},
		{"hostPath", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}, `volume "h" of type hostPath`},
		{"PVC", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}}
		}, "persistentVolumeClaim"},
		{"CSI", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "x"}}}}
		}, "of type csi"},
		{"init container too", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}
		}, `privileged container "setup"`},
	} {
		pod := testPod("p", ctr("app", "run"))
		tc.edit(pod)
		r := unsupported(pod)
		if r == nil || r.Reason != reasonUnsupported || !strings.Contains(r.Message, tc.want) {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
	pod := testPod("p", ctr("app", "run"))
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}},
		{Name: "pr", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
		{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
	}
	if r := unsupported(pod); r != nil {
		t.Fatalf("supported volumes rejected: %+v", r)
	}
}

func TestCostOf(t *testing.T) {
	s := podworker.Sizing{DefaultMemory: 512 << 20}
	withReq := func(name, cpu, mem string) corev1.Container {
		c := ctr(name, "run")
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
		return c
	}
	pod := testPod("p", withReq("a", "500m", "256Mi"), withReq("b", "250m", "256Mi"))
	if c := costOf(s, pod, 128<<20); c.cpuMillis != 750 || c.memoryBytes != 2*(256<<20+128<<20) {
		t.Fatalf("apps: %+v", c)
	}
	// Init containers run one at a time before the apps: the largest
	// counts against the apps' sum; a sidecar runs alongside and adds up.
	pod.Spec.InitContainers = []corev1.Container{withReq("big", "2", "2Gi"), withReq("small", "100m", "64Mi")}
	if c := costOf(s, pod, 128<<20); c.cpuMillis != 2000 || c.memoryBytes != 2<<30+128<<20 {
		t.Fatalf("with a large init container: %+v", c)
	}
	always := corev1.ContainerRestartPolicyAlways
	side := withReq("side", "100m", "64Mi")
	side.RestartPolicy = &always
	pod.Spec.InitContainers = []corev1.Container{side}
	if c := costOf(s, pod, 0); c.cpuMillis != 850 || c.memoryBytes != 576<<20 {
		t.Fatalf("with a sidecar: %+v", c)
	}
}

func TestAdmitResources(t *testing.T) {
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("3")}
	for _, tc := range []struct {
		name       string
		cost, used podCost
		pods       int
		want       string
	}{
		{"fits", podCost{500, 1 << 30}, podCost{1000, 2 << 30}, 1, ""},
		{"pods", podCost{1, 1}, podCost{}, 3, "OutOfpods"},
		{"cpu", podCost{1500, 1}, podCost{1000, 0}, 1, "OutOfcpu"},
		{"memory", podCost{1, 3 << 30}, podCost{0, 2 << 30}, 1, "OutOfmemory"},
	} {
		r := admitResources(tc.cost, tc.used, tc.pods, alloc)
		switch {
		case tc.want == "" && r != nil:
			t.Errorf("%s: rejected %+v", tc.name, r)
		case tc.want != "" && (r == nil || r.Reason != tc.want || !strings.HasPrefix(r.Message, "Node didn't have enough resource")):
			t.Errorf("%s: %+v, want %s", tc.name, r, tc.want)
		}
	}
}

func TestAdoptedPodsAreAlwaysAdmitted(t *testing.T) {
	h := newHarness(t)
	pod := testPod("p", ctr("app", "run"))
	pod.Spec.HostNetwork = true
	if r := h.p.admitLocked(pod, true); r != nil {
		t.Fatalf("a pod whose VMs already run was rejected: %+v", r)
	}
	if r := h.p.admitLocked(pod, false); r == nil {
		t.Fatal("a new hostNetwork pod was admitted")
	}
}

func TestGracePeriod(t *testing.T) {
	pod := testPod("p")
	pod.Spec.TerminationGracePeriodSeconds = nil
	if gracePeriod(pod) != 30e9 {
		t.Fatal("default")
	}
	five, two := int64(5), int64(2)
	pod.Spec.TerminationGracePeriodSeconds = &five
	if gracePeriod(pod) != 5e9 {
		t.Fatal("spec")
	}
	pod.DeletionGracePeriodSeconds = &two
	if gracePeriod(pod) != 2e9 {
		t.Fatal("the deletion's grace wins")
	}
}

func TestHostPortConflictIsRefusedAsTheKubeletDoes(t *testing.T) {
	h := newHarness(t)
	withPort := func(name string, port int32) *corev1.Pod {
		p := testPod(name, ctr("app", "sleep"))
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: port}}
		return p
	}
	h.create(withPort("first", 8080))
	h.waitFor("first", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	h.p.mu.Lock()
	r := h.p.admitLocked(withPort("second", 8080), false)
	other := h.p.admitLocked(withPort("third", 8081), false)
	h.p.mu.Unlock()
	if r == nil || r.Reason != "NodePorts" || !strings.Contains(r.Message, "TCP/8080") {
		t.Fatalf("a second pod on host port 8080: %+v", r)
	}
	if other != nil {
		t.Fatalf("host port 8081 is free: %+v", other)
	}
}
