package provider

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/vk-applevm/vk-applevm/provider/podworker"
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

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func waiting(reason string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == reason
	}
}

func hasEvent(events []string, substr string) bool { return hasEventIn(events, substr) }

func TestPodRunsAndBecomesReady(t *testing.T) {
	h := newHarness(t)
	h.create(testPod("web", ctr("app", "run")))
	p := h.waitFor("web", "ready", func(p *corev1.Pod) bool { return running(p) && cond(p, corev1.PodReady) == corev1.ConditionTrue })
	cs := p.Status.ContainerStatuses[0]
	if p.Status.PodIP != "10.89.0.2" || p.Status.HostIP != "10.201.0.2" || !cs.Ready || cs.ImageID == "" || !strings.HasPrefix(cs.ContainerID, "applevm://") {
		t.Fatalf("status = %+v", p.Status)
	}
	if !p.Status.StartTime.Time.Equal(t0) || !cs.State.Running.StartedAt.Time.Equal(t0) {
		t.Fatalf("times are not the fake clock's: start %v, started %v", p.Status.StartTime, cs.State.Running.StartedAt)
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
	got, err := h.p.GetPod(context.Background(), "ns", "web")
	if err != nil || got.Status.Phase != corev1.PodRunning {
		t.Fatalf("GetPod = %v, %v", got, err)
	}
}

// TestCrashLoopBackOffGrows: on the fake clock, restarts wait 10 s, 20 s,
// 40 s, 80 s, capped at 160 s, and the count rises as each new instance
// starts.
func TestCrashLoopBackOffGrows(t *testing.T) {
	h := newHarness(t)
	h.create(testPod("crash", ctr("app", "exit", "3")))
	var delays []string
	for restart := int32(0); restart < 6; restart++ {
		p := h.waitFor("crash", "in CrashLoopBackOff", func(p *corev1.Pod) bool {
			cs := p.Status.ContainerStatuses[0]
			return cs.RestartCount == restart && cs.State.Waiting != nil && cs.State.Waiting.Reason == podworker.ReasonCrashLoopBackOff
		})
		cs := p.Status.ContainerStatuses[0]
		if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 3 || lt.Reason != "Error" {
			t.Fatalf("lastState = %+v", cs.LastTerminationState)
		}
		if p.Status.Phase != corev1.PodRunning {
			t.Fatalf("a crash-looping pod under restartPolicy Always is Running, got %s", p.Status.Phase)
		}
		msg := cs.State.Waiting.Message
		delays = append(delays, msg[len("back-off "):strings.Index(msg, " restarting")])
		before := len(h.rt.startOrder())
		// Just short of the back-off: no restart.
		d, _ := time.ParseDuration(delays[len(delays)-1])
		h.clock.Step(d - time.Second)
		if n := len(h.rt.startOrder()); n != before {
			t.Fatalf("restarted %d instances before the back-off of %s ran out", n-before, d)
		}
		h.clock.Step(time.Second)
	}
	if want := []string{"10s", "20s", "40s", "1m20s", "2m40s", "2m40s"}; !slices.Equal(delays, want) {
		t.Fatalf("back-offs = %v, want %v", delays, want)
	}
	starts := h.rt.startOrder()
	if starts[0] != "app/main-0" || starts[4] != "app/main-4" {
		t.Fatalf("starts = %v", starts)
	}
	if !hasEvent(h.events(), "Warning BackOff Back-off restarting failed container app") {
		t.Error("no BackOff event")
	}
	if h.rt.live() != 1 {
		t.Fatalf("restarts created new VMs: %d live", h.rt.live())
	}
	if vm := h.rt.vm("uid--crash", "app"); vm == nil || vm.resetCount() < 4 {
		t.Fatalf("restarts must reset the writable layer: %+v", vm)
	}
}

func TestInitContainersRunInOrder(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", ctr("app", "run"))
	pod.Spec.InitContainers = []corev1.Container{ctr("first", "exit", "0", "20"), ctr("second", "exit", "0")}
	h.create(pod)
	p := h.waitFor("init", "initializing", func(p *corev1.Pod) bool {
		s := p.Status.InitContainerStatuses[0]
		return s.State.Running != nil && p.Status.Phase == corev1.PodPending
	})
	if cond(p, corev1.PodInitialized) != corev1.ConditionFalse || p.Status.ContainerStatuses[0].State.Waiting.Reason != "PodInitializing" {
		t.Fatalf("while the first init container runs: %+v", p.Status)
	}
	// The first init container takes 20 s of the fake clock.
	p = h.stepUntil("init", "running", time.Second, running)
	if !slices.Equal(h.rt.startOrder(), []string{"first/main-0", "second/main-0", "app/main-0"}) {
		t.Fatalf("start order = %v", h.rt.startOrder())
	}
	first := p.Status.InitContainerStatuses[0].State.Terminated
	if first == nil || first.Reason != "Completed" || first.FinishedAt.Sub(first.StartedAt.Time) < 20*time.Second {
		t.Fatalf("first init container = %+v", first)
	}
	if cond(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatal("not Initialized")
	}
	// Finished init containers give their VMs back.
	h.eventually("init VMs deleted", func() bool { return h.rt.live() == 1 })
}

func TestSidecarInitContainerRunsAlongside(t *testing.T) {
	h := newHarness(t)
	pod := testPod("side", ctr("app", "run"))
	always := corev1.ContainerRestartPolicyAlways
	side := ctr("proxy", "run")
	side.RestartPolicy = &always
	pod.Spec.InitContainers = []corev1.Container{side}
	h.create(pod)
	p := h.waitFor("side", "running with its sidecar", func(p *corev1.Pod) bool {
		return running(p) && p.Status.InitContainerStatuses[0].State.Running != nil && cond(p, corev1.PodReady) == corev1.ConditionTrue
	})
	if cond(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatal("a started sidecar counts as initialized")
	}
	if h.rt.live() != 2 {
		t.Fatalf("%d VMs, want the sidecar's and the app's", h.rt.live())
	}
}

func TestFailedInitContainerUnderNeverFailsPod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("initfail", ctr("app", "run"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{ctr("setup", "exit", "2")}
	h.create(pod)
	p := h.waitFor("initfail", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.ContainerStatuses[0].State.Waiting == nil {
		t.Fatalf("app container must never start: %+v", p.Status.ContainerStatuses[0])
	}
	if cond(p, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Fatal("a pod whose init container failed is not Initialized")
	}
}

func TestRestartPolicyNeverPhases(t *testing.T) {
	h := newHarness(t)
	ok := testPod("ok", ctr("app", "exit", "0"))
	ok.Spec.RestartPolicy = corev1.RestartPolicyNever
	bad := testPod("bad", ctr("app", "exit", "1"))
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(ok)
	h.create(bad)
	p := h.waitFor("ok", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if cond(p, corev1.PodReady) != corev1.ConditionFalse || cond(p, corev1.PodReadyToStartContainers) != corev1.ConditionFalse {
		t.Fatalf("a finished pod is neither ready nor ready to start containers: %+v", p.Status.Conditions)
	}
	p = h.waitFor("bad", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if t0 := p.Status.ContainerStatuses[0].State.Terminated; t0 == nil || t0.ExitCode != 1 {
		t.Fatalf("state = %+v", p.Status.ContainerStatuses[0].State)
	}
	h.eventually("VMs of finished pods freed", func() bool { return h.rt.live() == 0 })
}

func TestRestartPolicyOnFailure(t *testing.T) {
	h := newHarness(t)
	pod := testPod("onf", ctr("ok", "exit", "0"), ctr("bad", "exit", "1"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	h.create(pod)
	p := h.waitFor("onf", "bad backing off", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[1].State.Waiting
		return p.Status.ContainerStatuses[0].State.Terminated != nil && w != nil && w.Reason == podworker.ReasonCrashLoopBackOff
	})
	if p.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase = %s, want Running while a failed container restarts", p.Status.Phase)
	}
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatal("a container that exited 0 must not restart under OnFailure")
	}
}

func TestReadinessProbeFlipsReady(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"flag", "ready"}}}, PeriodSeconds: 5, FailureThreshold: 1}
	h.create(testPod("probe", c))
	h.waitFor("probe", "running but not ready", func(p *corev1.Pod) bool {
		return running(p) && cond(p, corev1.PodReady) == corev1.ConditionFalse && hasStarted(p)
	})
	h.waitEvent("Readiness probe failed") // the first probe, at once
	h.rt.setFlag("ready", true)
	p := h.stepUntil("probe", "ready", time.Second, func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionTrue })
	if r := readyCond(p); r.LastTransitionTime.Time.Sub(t0) < 5*time.Second {
		t.Fatalf("ready at %v, before the next probe period", r.LastTransitionTime)
	}
	h.rt.setFlag("ready", false)
	h.stepUntil("probe", "unready again", time.Second, func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionFalse })
}

func readyCond(p *corev1.Pod) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c
		}
	}
	return corev1.PodCondition{}
}

func hasStarted(p *corev1.Pod) bool {
	s := p.Status.ContainerStatuses[0].Started
	return s != nil && *s
}

func TestLivenessFailureRestarts(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1, FailureThreshold: 2}
	h.create(testPod("live", c))
	p := h.stepUntil("live", "restarted", time.Second, func(p *corev1.Pod) bool {
		return p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if lt := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; lt == nil || lt.ExitCode != 143 {
		t.Fatalf("the killed instance: %+v", lt)
	}
	if ev := h.events(); !hasEvent(ev, "failed liveness probe, will be restarted") {
		t.Errorf("no Killing event for the liveness failure: %q", ev)
	}
}

func TestStartupProbeGatesReadinessAndLiveness(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"flag", "up"}}}, PeriodSeconds: 1, FailureThreshold: 100}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	h.create(testPod("startup", c))
	p := h.waitFor("startup", "running", running)
	if hasStarted(p) || cond(p, corev1.PodReady) == corev1.ConditionTrue {
		t.Fatal("started and ready before the startup probe passed")
	}
	for range 5 {
		h.clock.Step(time.Second)
	}
	if p, _ := h.pod("startup"); p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatal("the liveness probe ran before the startup probe passed")
	}
	h.rt.setFlag("up", true)
	// Once started, the failing liveness probe restarts it.
	h.stepUntil("startup", "restarted by liveness", time.Second, func(p *corev1.Pod) bool {
		return p.Status.ContainerStatuses[0].RestartCount >= 1
	})
}

func TestStartupProbeFailureRestarts(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1, FailureThreshold: 3}
	h.create(testPod("nostart", c))
	h.stepUntil("nostart", "restarted", time.Second, func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount >= 1 })
	if !hasEvent(h.events(), "failed startup probe, will be restarted") {
		t.Fatal("no Killing event for the startup failure")
	}
}

func TestGracefulDeleteThenKill(t *testing.T) {
	h := newHarness(t)
	pod := testPod("del", ctr("polite", "run"), ctr("stubborn", "ignoreterm"))
	grace := int64(5)
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h.create(pod)
	h.waitFor("del", "running", func(p *corev1.Pod) bool {
		return running(p) && p.Status.ContainerStatuses[1].State.Running != nil
	})
	// What the runtime keeps there: logs, emptyDir contents.
	podDir := h.p.podDir(pod)
	if err := os.MkdirAll(filepath.Join(podDir, "polite"), 0o700); err != nil {
		t.Fatal(err)
	}
	pod.DeletionGracePeriodSeconds = &grace
	now := metav1.NewTime(h.clock.Now())
	pod.DeletionTimestamp = &now
	client := fake.NewSimpleClientset(pod.DeepCopy())
	h.p.wcfg.Client = client
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatalf("DeletePod must be idempotent: %v", err)
	}
	p := h.stepUntil("del", "terminated", 100*time.Millisecond, terminal)
	polite, stubborn := p.Status.ContainerStatuses[0].State.Terminated, p.Status.ContainerStatuses[1].State.Terminated
	if polite == nil || polite.ExitCode != 143 || stubborn == nil || stubborn.ExitCode != 137 {
		t.Fatalf("terminated states: %+v / %+v", polite, stubborn)
	}
	if took := stubborn.FinishedAt.Sub(now.Time); took < 5*time.Second {
		t.Fatalf("the stubborn container was killed %v after deletion, before its 5 s grace period", took)
	}
	if took := polite.FinishedAt.Sub(now.Time); took >= 5*time.Second {
		t.Fatalf("the polite container took %v: SIGTERM did not reach it", took)
	}
	h.eventually("VMs deleted", func() bool { return h.rt.live() == 0 })
	if pods, _ := h.p.GetPods(context.Background()); len(pods) != 0 {
		t.Fatalf("GetPods lists a terminated pod: %d", len(pods))
	}
	if !hasEvent(h.events(), "Normal Killing Stopping container stubborn") {
		t.Error("no Killing event")
	}
	// As the kubelet, the node deletes the object once the containers are
	// gone rather than waiting out the grace period (it first gives
	// virtual-kubelet up to 3 s of the clock to write the terminal status).
	guard := time.Now().Add(waitTimeout)
	for {
		_, err := client.CoreV1().Pods("ns").Get(context.Background(), "del", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(guard) {
			t.Fatalf("the pod object was not deleted: %v", err)
		}
		h.clock.Step(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	// Its directory (logs, emptyDirs) goes with it.
	h.eventually("the pod's directory removed", func() bool {
		_, err := os.Stat(podDir)
		return os.IsNotExist(err)
	})
}

func TestMissingConfigMapThenAppears(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "x"}}}}
	h.create(testPod("cfg", c))
	h.waitFor("cfg", "CreateContainerConfigError", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == podworker.ReasonCreateConfigError && strings.Contains(w.Message, `configmap "cfg" not found`)
	})
	if ev := h.events(); !hasEvent(ev, "MandatoryConfigMapNotFound") {
		t.Fatalf("events %q lack MandatoryConfigMapNotFound", ev)
	}
	if h.rt.live() != 0 {
		t.Fatal("a configuration error cost a VM")
	}
	h.objects.setConfigMap("ns", "cfg", &corev1.ConfigMap{Data: map[string]string{"x": "1"}})
	h.stepUntil("cfg", "running", time.Second, running)
}

func TestImagePullFailureBacksOff(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Image = "nosuchimage"
	h.create(testPod("pull", c))
	h.waitFor("pull", "ImagePullBackOff", waiting(podworker.ReasonImagePullBackOff))
	ev := h.events()
	if !hasEvent(ev, `Failed to pull image "nosuchimage"`) || !hasEvent(ev, "Error: ErrImagePull") || !hasEvent(ev, `Back-off pulling image "nosuchimage"`) {
		t.Fatalf("events = %q", ev)
	}
	if h.rt.live() != 0 {
		t.Fatal("a VM was created for an image that does not exist")
	}
	// The image appears; the next attempt after the back-off pulls it.
	h.rt.mu.Lock()
	h.rt.images["nosuchimage"] = h.rt.images["busybox"]
	h.rt.mu.Unlock()
	h.stepUntil("pull", "running", time.Second, running)
}

func TestNeverPullPolicy(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Image, c.ImagePullPolicy = "absent", corev1.PullNever
	h.create(testPod("never", c))
	p := h.waitFor("never", "ErrImageNeverPull", waiting(podworker.ReasonErrImageNeverPull))
	if !strings.Contains(p.Status.ContainerStatuses[0].State.Waiting.Message, "is not present with pull policy of Never") {
		t.Fatalf("message = %q", p.Status.ContainerStatuses[0].State.Waiting.Message)
	}
}

func TestCreateVMFailureIsCreateContainerError(t *testing.T) {
	h := newHarness(t)
	h.rt.mu.Lock()
	h.rt.createErr = context.DeadlineExceeded
	h.rt.mu.Unlock()
	h.create(testPod("nocreate", ctr("app", "run")))
	p := h.waitFor("nocreate", "CreateContainerError", waiting(podworker.ReasonCreateError))
	if !strings.Contains(p.Status.ContainerStatuses[0].State.Waiting.Message, "create VM") {
		t.Fatalf("message = %q", p.Status.ContainerStatuses[0].State.Waiting.Message)
	}
	h.rt.mu.Lock()
	h.rt.createErr = nil
	h.rt.mu.Unlock()
	h.stepUntil("nocreate", "running", time.Second, running)
}

func TestUnsupportedPodFailsFast(t *testing.T) {
	h := newHarness(t)
	pod := testPod("hostnet", ctr("app", "run"))
	pod.Spec.HostNetwork = true
	h.create(pod)
	p := h.waitFor("hostnet", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != reasonUnsupported || !strings.Contains(p.Status.Message, "hostNetwork") {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != reasonUnsupported {
		t.Fatalf("container state = %+v", p.Status.ContainerStatuses[0].State)
	}
	if !hasEvent(h.events(), "Warning "+reasonUnsupported) {
		t.Fatal("no event")
	}
}

func TestAdmissionOutOfMemory(t *testing.T) {
	h := newHarness(t)
	big := ctr("app", "run")
	big.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("6Gi")}
	h.create(testPod("big1", big))
	h.waitFor("big1", "running", running)
	h.create(testPod("big2", big))
	p := h.waitFor("big2", "rejected", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "OutOfmemory" {
		t.Fatalf("reason = %q (%s)", p.Status.Reason, p.Status.Message)
	}
}

func TestCommandNotFoundIsStartError(t *testing.T) {
	h := newHarness(t)
	pod := testPod("nf", ctr("app", "notfound"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	p := h.waitFor("nf", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.Reason != "StartError" || term.ExitCode != 128 || !strings.Contains(term.Message, "executable file not found") {
		t.Fatalf("terminated = %+v", term)
	}
}

func TestImageChangeRestartsWithoutBackoff(t *testing.T) {
	h := newHarness(t)
	pod := testPod("img", ctr("app", "run"))
	h.create(pod)
	h.waitFor("img", "running", running)
	h.rt.mu.Lock()
	h.rt.images["busybox:2"] = h.rt.images["busybox"]
	h.rt.mu.Unlock()
	newer := pod.DeepCopy()
	newer.Spec.Containers[0].Image = "busybox:2"
	if err := h.p.UpdatePod(context.Background(), newer); err != nil {
		t.Fatal(err)
	}
	// No clock step: a definition change restarts at once.
	p := h.waitFor("img", "running the new image", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount == 1 && cs.State.Running != nil && cs.Image == "busybox:2"
	})
	if lt := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; lt == nil || lt.ExitCode != 143 {
		t.Fatalf("last state = %+v", lt)
	}
	if !hasEvent(h.events(), "definition changed, will be restarted") {
		t.Fatal("no Killing event for the image change")
	}
	other := pod.DeepCopy()
	other.UID = "another"
	if err := h.p.UpdatePod(context.Background(), other); err == nil {
		t.Fatal("UpdatePod of a pod with another UID must fail")
	}
}

func TestReattachAfterNodeRestart(t *testing.T) {
	h := newHarness(t)
	pod := testPod("keep", ctr("app", "run"))
	h.create(pod)
	p := h.waitFor("keep", "running", running)
	started := p.Status.ContainerStatuses[0].State.Running.StartedAt

	// A new node process over the same runtime: the old one is gone.
	h.sess.crash()
	h2 := newHarnessOn(t, h.clock, h.rt)
	if err := h2.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pods, _ := h2.p.GetPods(context.Background()); len(pods) != 1 || pods[0].UID != pod.UID {
		t.Fatalf("after Reconcile GetPods = %v, want the orphan pod", pods)
	}
	again := pod.DeepCopy()
	again.Status = p.Status
	h2.create(again)
	p2 := h2.waitFor("keep", "running again", func(p *corev1.Pod) bool {
		return running(p) && cond(p, corev1.PodReady) == corev1.ConditionTrue
	})
	cs := p2.Status.ContainerStatuses[0]
	if cs.RestartCount != 0 || !cs.State.Running.StartedAt.Equal(&started) || p2.Status.PodIP != p.Status.PodIP {
		t.Fatalf("re-attach restarted the container: %+v", cs)
	}
	h.rt.mu.Lock()
	created, starts := len(h.rt.created), len(h.rt.starts)
	h.rt.mu.Unlock()
	if created != 1 || starts != 1 {
		t.Fatalf("re-attach created %d VMs and started %d processes, want 1 and 1", created, starts)
	}
}

func TestReattachFindsTheProcessEnded(t *testing.T) {
	h := newHarness(t)
	pod := testPod("ended", ctr("app", "exit", "7", "30"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	p := h.waitFor("ended", "running", running)
	// The node goes away; the process ends while it is down.
	h.sess.crash()
	h.clock.Step(30 * time.Second)
	h2 := newHarnessOn(t, h.clock, h.rt)
	if err := h2.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := pod.DeepCopy()
	again.Status = p.Status
	h2.create(again)
	p2 := h2.waitFor("ended", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if term := p2.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 7 || term.Reason != "Error" {
		t.Fatalf("terminated = %+v", term)
	}
}

func TestReattachWithoutVMStartsAgain(t *testing.T) {
	h := newHarness(t)
	pod := testPod("lost", ctr("app", "run"))
	h.create(pod)
	p := h.waitFor("lost", "running", running)
	// The VM is gone when the node comes back.
	clk := h.clock
	h2 := newHarnessOn(t, clk, newFakeRuntime(clk))
	again := pod.DeepCopy()
	again.Status = p.Status
	h2.create(again)
	h2.eventually("a new VM", func() bool { return h2.rt.live() == 1 })
	p2 := h2.waitFor("lost", "running in the new VM", func(p *corev1.Pod) bool { return running(p) && p.Status.PodIP == "10.89.0.2" })
	if !slices.Equal(h2.rt.startOrder(), []string{"app/main-0"}) || p2.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("starts = %v, status %+v", h2.rt.startOrder(), p2.Status.ContainerStatuses[0])
	}
}

func TestOrphanVMsDeletedWithTheirPod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("gone", ctr("app", "run"))
	h.create(pod)
	h.waitFor("gone", "running", running)
	h.sess.crash()
	h2 := newHarnessOn(t, h.clock, h.rt)
	if err := h2.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h2.p.podDir(pod), "app"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := h2.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatalf("DeletePod of an orphan: %v", err)
	}
	h.eventually("the orphan's VM deleted", func() bool { return h.rt.live() == 0 })
	h.eventually("the orphan's directory removed", func() bool {
		_, err := os.Stat(h2.p.podDir(pod))
		return os.IsNotExist(err)
	})
	if err := h2.p.DeletePod(context.Background(), testPod("never-here")); err == nil {
		t.Fatal("DeletePod of an unknown pod must be NotFound")
	}
}

func TestSameNameNewUIDWaitsForTheOld(t *testing.T) {
	h := newHarness(t)
	old := testPod("same", ctr("app", "run"))
	h.create(old)
	h.waitFor("same", "running", running)
	if err := h.p.DeletePod(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	newer := testPod("same", ctr("app", "run"))
	newer.UID = "uid--same-2"
	h.create(newer)
	p := h.stepUntil("same", "the new pod running", 100*time.Millisecond, func(p *corev1.Pod) bool { return p.UID == newer.UID && running(p) })
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatal("the new pod inherited the old one's restarts")
	}
}

// At start the node removes directories of pods the API server no longer
// binds to it and no VM here belongs to.
func TestSweepPodDirsAtStart(t *testing.T) {
	h := newHarness(t)
	kept := testPod("kept", ctr("app", "run"))
	kept.Spec.NodeName = "mac"
	gone := testPod("gone", ctr("app", "run"))
	for _, p := range []*corev1.Pod{kept, gone} {
		if err := os.MkdirAll(filepath.Join(h.p.podDir(p), "app"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	h.p.cfg.Client = fake.NewSimpleClientset(kept.DeepCopy())
	if err := h.p.SweepPodDirs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.p.podDir(kept)); err != nil {
		t.Fatalf("the directory of a pod bound to the node: %v", err)
	}
	if _, err := os.Stat(h.p.podDir(gone)); !os.IsNotExist(err) {
		t.Fatalf("the directory of a pod the cluster no longer has: %v", err)
	}
}

// With the node's pod informer, the worker waits on it for the terminal
// status before deleting the pod object, and asks the API server nothing
// else: 100 pods deleted at once no longer send thousands of GETs.
func TestFinalDeleteWaitsOnTheInformer(t *testing.T) {
	h := newHarness(t)
	pod := testPod("del", ctr("app", "run"))
	h.create(pod)
	h.waitFor("del", "running", running)
	grace := int64(30)
	pod.DeletionGracePeriodSeconds = &grace
	now := metav1.NewTime(h.clock.Now())
	pod.DeletionTimestamp = &now
	client := fake.NewSimpleClientset(pod.DeepCopy())
	var gets, deletes atomic.Int32
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		deletes.Add(1)
		return false, nil, nil
	})
	// The informer's copy shows the terminal status virtual-kubelet wrote.
	informed := pod.DeepCopy()
	informed.Status.Phase = corev1.PodSucceeded
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := pods.Add(informed); err != nil {
		t.Fatal(err)
	}
	h.p.wcfg.Client, h.p.wcfg.Pods = client, corelisters.NewPodLister(pods)
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.eventually("the pod object deleted", func() bool { return deletes.Load() == 1 })
	if n := gets.Load(); n != 0 {
		t.Errorf("the worker sent %d GETs of the pod; want none", n)
	}
}

// TestCrashLoopingPodKeepsTwoLogSetsAndLeavesNothing: a container with an
// emptyDir restarted three times has at most two log sets on disk at any
// time (the current instance's and the previous one's), and once the pod
// is deleted its directory — logs, volumes — is gone.
func TestCrashLoopingPodKeepsTwoLogSetsAndLeavesNothing(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "log", "crashing", "exit", "3")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	pod := testPod("loop", c)
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	h.create(pod)
	podDir := h.p.podDir(pod)
	most := 0
	logSets := func() int {
		n := 0
		_ = filepath.WalkDir(podDir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".log") {
				n++
			}
			return nil
		})
		return n
	}
	h.stepUntil("loop", "restarted three times", time.Second, func(p *corev1.Pod) bool {
		most = max(most, logSets())
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 3
	})
	h.eventually("the fourth instance's log", func() bool { most = max(most, logSets()); return logSets() == 2 })
	if most > 2 {
		t.Fatalf("%d log files at once under the pod's directory, want at most 2 (current and previous)", most)
	}
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.eventually("the pod's directory removed", func() bool {
		h.clock.Step(100 * time.Millisecond)
		_, err := os.Stat(podDir)
		return os.IsNotExist(err)
	})
}
