package provider

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func cond(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func running(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil
}

func hasEvent(events []string, substr string) bool {
	return slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, substr) })
}

func TestPodRunsAndBecomesReady(t *testing.T) {
	h := newHarness(t)
	if err := h.p.CreatePod(context.Background(), testPod("web", ctr("app", "run"))); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("web", "ready", func(p *corev1.Pod) bool { return running(p) && cond(p, corev1.PodReady) == corev1.ConditionTrue })
	cs := p.Status.ContainerStatuses[0]
	if p.Status.PodIP == "" || p.Status.HostIP != "10.201.0.2" || !cs.Ready || cs.ImageID == "" || !strings.HasPrefix(cs.ContainerID, "applevm://") {
		t.Fatalf("status = %+v", p.Status)
	}
	for _, c := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReadyToStartContainers} {
		if cond(p, c) != corev1.ConditionTrue {
			t.Errorf("condition %s = %s, want True", c, cond(p, c))
		}
	}
	ev := h.events()
	for _, want := range []string{`Normal Pulling Pulling image "busybox"`, `Normal Pulled Successfully pulled image "busybox" in 1.5s (`,
		"including waiting). Image size: 1234 bytes.", "Normal Created Created container app", "Normal Started Started container app"} {
		if !hasEvent(ev, want) {
			t.Errorf("missing event %q in %q", want, ev)
		}
	}
	pods, _ := h.p.GetPods(context.Background())
	if len(pods) != 1 {
		t.Fatalf("GetPods = %d pods, want 1", len(pods))
	}
}

func TestCrashLoopBackOffGrows(t *testing.T) {
	h := newHarness(t)
	if err := h.p.CreatePod(context.Background(), testPod("crash", ctr("app", "exit", "3"))); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("crash", "restarted 4 times", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 4
	})
	cs := p.Status.ContainerStatuses[0]
	if cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 || cs.LastTerminationState.Terminated.Reason != reasonError {
		t.Fatalf("lastState = %+v", cs.LastTerminationState)
	}
	h.waitFor("crash", "in CrashLoopBackOff", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == reasonCrashLoopBackOff && strings.Contains(w.Message, "back-off")
	})
	// Restart gaps grow: 20, 40, 80, 160 ms.
	h.rt.mu.Lock()
	starts := slices.Clone(h.rt.starts)
	h.rt.mu.Unlock()
	if len(starts) < 5 || starts[0] != "app/main-0" || starts[4] != "app/main-4" {
		t.Fatalf("starts = %v", starts)
	}
	if !hasEvent(h.events(), "Warning BackOff Back-off restarting failed container app") {
		t.Error("no BackOff event")
	}
	if h.rt.live() != 1 {
		t.Fatalf("restarts created new VMs: %d live", h.rt.live())
	}
	h.rt.mu.Lock()
	sb := h.rt.sandboxes[sandboxID("uid--crash", "app")]
	h.rt.mu.Unlock()
	if sb == nil || sb.resets < 4 {
		t.Fatalf("restarts must reset the writable layer: %+v", sb)
	}
}

func TestBackoffDelaysDouble(t *testing.T) {
	b := newCrashBackoff(10*time.Second, 5*time.Minute)
	var got []time.Duration
	for range 7 {
		got = append(got, b.delay(time.Second))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays = %v, want %v", got, want)
	}
	if d := b.delay(11 * time.Minute); d != 10*time.Second {
		t.Fatalf("after a long run the back-off must reset, got %v", d)
	}
}

func TestInitContainersRunInOrder(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", ctr("app", "run"))
	pod.Spec.InitContainers = []corev1.Container{ctr("first", "exit", "0", "20"), ctr("second", "exit", "0")}
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("init", "running", running)
	h.rt.mu.Lock()
	starts := slices.Clone(h.rt.starts)
	h.rt.mu.Unlock()
	if !slices.Equal(starts, []string{"first/main-0", "second/main-0", "app/main-0"}) {
		t.Fatalf("start order = %v", starts)
	}
	for _, s := range p.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.Reason != reasonCompleted {
			t.Fatalf("init status = %+v", s)
		}
	}
	if cond(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatal("not Initialized")
	}
	// Finished init containers give their VMs back.
	if n := h.rt.live(); n != 1 {
		t.Fatalf("%d VMs live, want only the app's", n)
	}
}

func TestFailedInitContainerUnderNeverFailsPod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("initfail", ctr("app", "run"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{ctr("setup", "exit", "2")}
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("initfail", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.ContainerStatuses[0].State.Waiting == nil {
		t.Fatalf("app container must never start: %+v", p.Status.ContainerStatuses[0])
	}
}

func TestRestartPolicyNeverPhases(t *testing.T) {
	h := newHarness(t)
	ok := testPod("ok", ctr("app", "exit", "0"))
	ok.Spec.RestartPolicy = corev1.RestartPolicyNever
	bad := testPod("bad", ctr("app", "exit", "1"))
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	for _, p := range []*corev1.Pod{ok, bad} {
		if err := h.p.CreatePod(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("ok", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	p := h.waitFor("bad", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if t0 := p.Status.ContainerStatuses[0].State.Terminated; t0 == nil || t0.ExitCode != 1 {
		t.Fatalf("state = %+v", p.Status.ContainerStatuses[0].State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.rt.live() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h.rt.live() != 0 {
		t.Fatal("VMs of finished pods must be freed")
	}
}

func TestReadinessProbeFlipsReady(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"flag", "ready"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	if err := h.p.CreatePod(context.Background(), testPod("probe", c)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("probe", "running but not ready", func(p *corev1.Pod) bool {
		return running(p) && cond(p, corev1.PodReady) == corev1.ConditionFalse && hasStarted(p)
	})
	h.rt.setFlag("ready", true)
	h.waitFor("probe", "ready", func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionTrue })
	h.rt.setFlag("ready", false)
	h.waitFor("probe", "unready again", func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionFalse })
	if !hasEvent(h.events(), "Warning Unhealthy Readiness probe failed") {
		t.Error("no Unhealthy event")
	}
}

func hasStarted(p *corev1.Pod) bool {
	s := p.Status.ContainerStatuses[0].Started
	return s != nil && *s
}

func TestLivenessFailureRestarts(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	if err := h.p.CreatePod(context.Background(), testPod("live", c)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("live", "restarted", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if ev := h.events(); !hasEvent(ev, "failed liveness probe, will be restarted") {
		t.Errorf("no Killing event for the liveness failure: %q", ev)
	}
}

func TestGracefulDeleteThenKill(t *testing.T) {
	h := newHarness(t)
	pod := testPod("del", ctr("polite", "run"), ctr("stubborn", "ignoreterm"))
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.waitFor("del", "running", func(p *corev1.Pod) bool {
		return running(p) && p.Status.ContainerStatuses[1].State.Running != nil
	})
	start := time.Now()
	grace := int64(1)
	pod.DeletionGracePeriodSeconds = &grace
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	client := fake.NewSimpleClientset(pod.DeepCopy())
	h.p.cfg.Client = client
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatalf("DeletePod must be idempotent: %v", err)
	}
	p := h.waitFor("del", "terminated", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	})
	took := time.Since(start)
	polite, stubborn := p.Status.ContainerStatuses[0].State.Terminated, p.Status.ContainerStatuses[1].State.Terminated
	if polite == nil || polite.ExitCode != 143 || stubborn == nil || stubborn.ExitCode != 137 {
		t.Fatalf("terminated states: %+v / %+v", polite, stubborn)
	}
	if took < time.Second {
		t.Fatalf("the stubborn container was killed after %v, before its 1 s grace period", took)
	}
	if h.rt.live() != 0 {
		t.Fatal("VMs remain after deletion")
	}
	if pods, _ := h.p.GetPods(context.Background()); len(pods) != 0 {
		t.Fatalf("GetPods lists a terminated pod: %d", len(pods))
	}
	if !hasEvent(h.events(), "Normal Killing Stopping container stubborn") {
		t.Error("no Killing event")
	}
	// As the kubelet, the node deletes the object once the containers are
	// gone rather than waiting out the grace period.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.CoreV1().Pods("ns").Get(context.Background(), "del", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod object was not deleted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMissingConfigMapThenAppears(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "x"}}}}
	if err := h.p.CreatePod(context.Background(), testPod("cfg", c)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("cfg", "CreateContainerConfigError", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == reasonCreateConfigError && strings.Contains(w.Message, `configmap "cfg" not found`)
	})
	if ev := h.events(); !hasEvent(ev, reasonMandatoryConfigMapNotFound) {
		t.Fatalf("events %q lack %s", ev, reasonMandatoryConfigMapNotFound)
	}
	h.rt.mu.Lock()
	h.objects.configMaps["ns/cfg"] = &corev1.ConfigMap{Data: map[string]string{"x": "1"}}
	h.rt.mu.Unlock()
	h.waitFor("cfg", "running", running)
}

func TestImagePullFailureBacksOff(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Image = "nosuchimage"
	if err := h.p.CreatePod(context.Background(), testPod("pull", c)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pull", "ImagePullBackOff", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == reasonImagePullBackOff
	})
	ev := h.events()
	if !hasEvent(ev, `Failed to pull image "nosuchimage"`) || !hasEvent(ev, "Error: ErrImagePull") {
		t.Fatalf("events = %q", ev)
	}
	if h.rt.live() != 0 {
		t.Fatal("a VM was created for an image that does not exist")
	}
}

func TestUnsupportedPodFailsFast(t *testing.T) {
	h := newHarness(t)
	pod := testPod("hostnet", ctr("app", "run"))
	pod.Spec.HostNetwork = true
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("hostnet", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != reasonUnsupported || !strings.Contains(p.Status.Message, "hostNetwork") {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if !hasEvent(h.events(), "Warning "+reasonUnsupported) {
		t.Fatal("no event")
	}
}

func TestAdmissionOutOfMemory(t *testing.T) {
	h := newHarness(t)
	big := ctr("app", "run")
	big.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("6Gi")}
	if err := h.p.CreatePod(context.Background(), testPod("big1", big)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("big1", "running", running)
	if err := h.p.CreatePod(context.Background(), testPod("big2", big)); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("big2", "rejected", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "OutOfmemory" {
		t.Fatalf("reason = %q (%s)", p.Status.Reason, p.Status.Message)
	}
}

func TestCommandNotFoundIsStartError(t *testing.T) {
	h := newHarness(t)
	pod := testPod("nf", ctr("app", "notfound"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("nf", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.Reason != "StartError" || !strings.Contains(term.Message, "executable file not found") {
		t.Fatalf("terminated = %+v", term)
	}
}

func TestReattachAfterNodeRestart(t *testing.T) {
	h := newHarness(t)
	pod := testPod("keep", ctr("app", "run"))
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := h.waitFor("keep", "running", running)
	started := p.Status.ContainerStatuses[0].State.Running.StartedAt

	// A new node process over the same runtime: the old provider is gone.
	h2 := newHarness(t)
	h2.rt = h.rt
	h2.p.cfg.Runtime = h.rt
	if err := h2.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pods, _ := h2.p.GetPods(context.Background()); len(pods) != 1 || pods[0].UID != pod.UID {
		t.Fatalf("after Reconcile GetPods = %v, want the orphan pod", pods)
	}
	again := pod.DeepCopy()
	again.Status = p.Status
	if err := h2.p.CreatePod(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	p2 := h2.waitFor("keep", "running again", func(p *corev1.Pod) bool {
		return running(p) && cond(p, corev1.PodReady) == corev1.ConditionTrue
	})
	cs := p2.Status.ContainerStatuses[0]
	if cs.RestartCount != 0 || !cs.State.Running.StartedAt.Equal(&started) {
		t.Fatalf("re-attach restarted the container: %+v", cs)
	}
	h.rt.mu.Lock()
	created, starts := len(h.rt.created), len(h.rt.starts)
	h.rt.mu.Unlock()
	if created != 1 || starts != 1 {
		t.Fatalf("re-attach created %d VMs and started %d processes, want 1 and 1", created, starts)
	}
}
