package provider

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/provider/podworker"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestEphemeralStorageEviction: a container whose writable layer and logs
// outgrow its ephemeral-storage limit gets the pod evicted at the next
// measurement (10 s of the clock), as the kubelet's eviction manager does:
// phase Failed, reason Evicted, the kubelet's message, a Warning event,
// containers killed at once and not restarted. With a sibling under its
// own limit the pod's total stays within the sum, so the message is the
// container's (alone, the pod's total would be over first: the kubelet
// checks that before each container).
func TestEphemeralStorageEviction(t *testing.T) {
	h := newHarness(t)
	c, idle := ctr("app", "run"), ctr("idle", "run")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("16Mi")}
	idle.Resources.Limits = c.Resources.Limits
	h.create(testPod("evict", c, idle))
	h.waitFor("evict", "running", running)
	vm := h.rt.vm("uid--evict", "app")
	vm.mu.Lock()
	vm.scratchUsed = 12 << 20
	vm.mu.Unlock()
	// Within the limit with the logs: measured, kept.
	if err := os.MkdirAll(vm.cfg.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vm.cfg.LogDir, "old.log"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(podworker.DefaultEvictionPeriod)
	time.Sleep(50 * time.Millisecond)
	if p, _ := h.pod("evict"); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase %s at exactly the limit", p.Status.Phase)
	}
	if err := os.WriteFile(filepath.Join(vm.cfg.LogDir, "old.log"), make([]byte, 4<<20+1), 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.stepUntil("evict", "evicted", time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	const msg = `Container app exceeded its local ephemeral storage limit "16Mi". `
	if p.Status.Reason != "Evicted" || p.Status.Message != msg {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if terminatedOf(p) == nil {
		t.Fatalf("Failed before the container stopped: %+v", p.Status.ContainerStatuses)
	}
	if !hasEvent(h.events(), "Warning Evicted "+msg) {
		t.Fatalf("no Evicted event: %v", h.events())
	}
	h.eventually("VMs deleted", func() bool { return h.rt.live() == 0 })
}

// TestEvictionWithRestartPolicyNever: the containers' kill alone makes
// such a pod Failed, which is its last status: it must already say
// Evicted.
func TestEvictionWithRestartPolicyNever(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("16Mi")}
	pod := testPod("never", c)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	h.waitFor("never", "running", running)
	vm := h.rt.vm("uid--never", "app")
	vm.mu.Lock()
	vm.scratchUsed = 17 << 20
	vm.mu.Unlock()
	p := h.stepUntil("never", "evicted", time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "Evicted" || p.Status.Message != "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi. " {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
}

// TestSharedEmptyDirEviction: an emptyDir two containers share is a host
// directory; past its sizeLimit (as du measures it) the pod is evicted.
func TestSharedEmptyDirEviction(t *testing.T) {
	h := newHarness(t)
	a, b := ctr("a", "run"), ctr("b", "run")
	a.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/s"}}
	b.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/s"}}
	pod := testPod("shared", a, b)
	size := resource.MustParse("8Mi")
	pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &size}}}}
	h.create(pod)
	h.waitFor("shared", "running", running)
	dir := h.rt.vm("uid--shared", "a").cfg.Mounts[0].HostPath
	if err := os.MkdirAll(dir, 0o777); err != nil { // the fake runtime makes no directories
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	// Allocated blocks count, not the apparent size (du's rule).
	if _, err := f.Write(make([]byte, 9<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := h.stepUntil("shared", "evicted", time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "Evicted" || p.Status.Message != `Usage of EmptyDir volume "shared" exceeds the limit "8Mi". ` {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
}

// TestEvictionWhileAContainerIsCreated: evicted while its second
// container's VM is still being created (under TCG a boot takes seconds,
// and a writer can fill its emptyDir before its sibling starts), the pod's
// last status has every container terminated, the one that never ran as
// ContainerStatusUnknown, as the kubelet's TerminatePod reports it, never
// Waiting in a Failed pod.
func TestEvictionWhileAContainerIsCreated(t *testing.T) {
	h := newHarness(t)
	h.rt.images["slowboot"] = h.rt.images["busybox"]
	release := h.rt.hold("create/slowboot")
	t.Cleanup(release)
	a, b := ctr("a", "run"), ctr("b", "run")
	b.Image = "slowboot"
	a.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("16Mi")}
	pod := testPod("creating", a, b)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	h.waitFor("creating", "a running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	h.eventually("b's VM being created", func() bool { return h.rt.isBlocked("create/slowboot") })
	vm := h.rt.vm("uid--creating", "a")
	vm.mu.Lock()
	vm.scratchUsed = 17 << 20
	vm.mu.Unlock()
	p := h.stepUntil("creating", "evicted", time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "Evicted" {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			t.Fatalf("container %s in the Failed pod's status: %+v, want terminated", cs.Name, cs.State)
		}
		if cs.Name == "b" && (cs.State.Terminated.Reason != "ContainerStatusUnknown" || cs.State.Terminated.ExitCode != 137) {
			t.Fatalf("container b, never started: %+v, want ContainerStatusUnknown, 137", cs.State.Terminated)
		}
	}
}
