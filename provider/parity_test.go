package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/provider/podworker"
	corev1 "k8s.io/api/core/v1"
)

func neverPod(name string, c corev1.Container) *corev1.Pod {
	pod := testPod(name, c)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	return pod
}

func terminatedOf(p *corev1.Pod) *corev1.ContainerStateTerminated {
	return p.Status.ContainerStatuses[0].State.Terminated
}

// TestTerminationMessageFromFile: the file at terminationMessagePath,
// read from the container's root after it exited, is state.terminated.message.
func TestTerminationMessageFromFile(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "log", "some output", "file", "/dev/termination-log", "written by the app", "exit", "0")
	c.TerminationMessagePath = "/dev/termination-log"
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	h.create(neverPod("msg", c))
	p := h.waitFor("msg", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got := terminatedOf(p).Message; got != "written by the app" {
		t.Fatalf("message = %q", got)
	}
}

// TestTerminationMessageFallsBackToLogs: with FallbackToLogsOnError, a
// failed container without a message gets the end of its log; a
// succeeded one does not.
func TestTerminationMessageFallsBackToLogs(t *testing.T) {
	h := newHarness(t)
	failing := ctr("app", "log", "first line", "log", "last words", "exit", "3")
	failing.TerminationMessagePath = "/dev/termination-log"
	failing.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	h.create(neverPod("fallback", failing))
	p := h.waitFor("fallback", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if got := terminatedOf(p).Message; got != "first line\nlast words\n" {
		t.Fatalf("message = %q, want the log's lines", got)
	}

	ok := ctr("app", "log", "all good", "exit", "0")
	ok.TerminationMessagePath = "/dev/termination-log"
	ok.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	h.create(neverPod("fine", ok))
	p = h.waitFor("fine", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got := terminatedOf(p).Message; got != "" {
		t.Fatalf("a successful container's message = %q, want none", got)
	}

	// A file wins over the logs even on failure.
	both := ctr("app", "log", "noise", "file", "/msg", "the reason", "exit", "1")
	both.TerminationMessagePath = "/msg"
	both.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	h.create(neverPod("both", both))
	p = h.waitFor("both", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if got := terminatedOf(p).Message; got != "the reason" {
		t.Fatalf("message = %q, want the file's", got)
	}
}

// TestTerminationMessageBounds: the file gives at most its last 4096
// bytes, the log its last 80 lines and 2048 bytes, as the kubelet.
func TestTerminationMessageBounds(t *testing.T) {
	h := newHarness(t)
	big := strings.Repeat("x", 5000) + "END"
	c := ctr("app", "file", "/dev/termination-log", big, "exit", "0")
	c.TerminationMessagePath = "/dev/termination-log"
	h.create(neverPod("bigfile", c))
	p := h.waitFor("bigfile", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got := terminatedOf(p).Message; len(got) != 4096 || !strings.HasSuffix(got, "END") {
		t.Fatalf("message of %d bytes ending %q, want the file's last 4096", len(got), got[max(0, len(got)-5):])
	}

	var script []string
	for i := range 100 {
		script = append(script, "log", strings.Repeat("y", 10)+"-"+string(rune('a'+i%26)))
	}
	l := ctr("app", append(script, "exit", "2")...)
	l.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	h.create(neverPod("manylines", l))
	p = h.waitFor("manylines", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if got := terminatedOf(p).Message; strings.Count(got, "\n") != 80 {
		t.Fatalf("message has %d lines, want the last 80", strings.Count(got, "\n"))
	}

	var long []string
	for range 10 {
		long = append(long, "log", strings.Repeat("z", 500))
	}
	l2 := ctr("app", append(long, "exit", "2")...)
	l2.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	h.create(neverPod("longlines", l2))
	p = h.waitFor("longlines", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if got := terminatedOf(p).Message; len(got) != 2048 {
		t.Fatalf("message of %d bytes, want the log's last 2048", len(got))
	}
}

// TestTerminationMessagesShareThePodBudget: 12 KiB per pod, split equally
// between its containers (the kubelet's status manager).
func TestTerminationMessagesShareThePodBudget(t *testing.T) {
	h := newHarness(t)
	var cs []corev1.Container
	for _, n := range []string{"a", "b", "c", "d"} {
		c := ctr(n, "file", "/m", strings.Repeat(n, 4000), "exit", "0")
		c.TerminationMessagePath = "/m"
		cs = append(cs, c)
	}
	pod := testPod("budget", cs...)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	p := h.waitFor("budget", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	for _, s := range p.Status.ContainerStatuses {
		if n := len(s.State.Terminated.Message); n != 3072 {
			t.Errorf("container %s message is %d bytes, want 12 KiB / 4 = 3072", s.Name, n)
		}
	}
}

// TestActiveDeadlineFailsThePod: past activeDeadlineSeconds (from the
// pod's start), the pod fails with DeadlineExceeded and its containers are
// killed, as the kubelet's activeDeadlineHandler does.
func TestActiveDeadlineFailsThePod(t *testing.T) {
	h := newHarness(t)
	pod := testPod("deadline", ctr("app", "run"), ctr("slow", "ignoreterm"))
	deadline := int64(30)
	pod.Spec.ActiveDeadlineSeconds = &deadline
	h.create(pod)
	h.waitFor("deadline", "running", func(p *corev1.Pod) bool { return running(p) && p.Status.ContainerStatuses[1].State.Running != nil })
	h.clock.Step(29 * time.Second)
	if p, _ := h.pod("deadline"); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase %s before the deadline", p.Status.Phase)
	}
	h.clock.Step(time.Second)
	// The containers are killed within the pod's grace period (1 s); the
	// pod turns Failed once they have stopped (virtual-kubelet pushes no
	// status after a terminal one), with both exits in that status.
	p := h.stepUntil("deadline", "failed", 100*time.Millisecond, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != podworker.ReasonDeadlineExceeded || p.Status.Message != podworker.MessageDeadlineExceeded {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if terminatedOf(p) == nil || p.Status.ContainerStatuses[1].State.Terminated == nil {
		t.Fatalf("Failed before the containers stopped: %+v", p.Status.ContainerStatuses)
	}
	if a, s := terminatedOf(p), p.Status.ContainerStatuses[1].State.Terminated; a.ExitCode != 143 || s.ExitCode != 137 {
		t.Fatalf("exits %d and %d, want 143 (SIGTERM) and 137 (SIGKILL after the grace period)", a.ExitCode, s.ExitCode)
	}
	if p.Status.Phase != corev1.PodFailed || cond(p, corev1.PodReady) != corev1.ConditionFalse {
		t.Fatalf("after the kill: phase %s, ready %s", p.Status.Phase, cond(p, corev1.PodReady))
	}
	h.eventually("VMs deleted", func() bool { return h.rt.live() == 0 })
	if !hasEvent(h.events(), "Normal DeadlineExceeded Pod was active on the node longer than the specified deadline") {
		t.Fatal("no DeadlineExceeded event")
	}
	if pods, _ := h.p.GetPods(context.Background()); len(pods) != 0 {
		t.Fatalf("GetPods lists the failed pod: %d", len(pods))
	}
}

// TestActiveDeadlineSetByUpdate: activeDeadlineSeconds may be added to a
// running pod; the deadline counts from the pod's start.
// TestActiveDeadlineWithRestartPolicyNever: the containers' kill alone
// makes such a pod Failed, its last pushed status: it must already say
// DeadlineExceeded.
func TestActiveDeadlineWithRestartPolicyNever(t *testing.T) {
	h := newHarness(t)
	pod := testPod("never", ctr("app", "run"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	deadline := int64(30)
	pod.Spec.ActiveDeadlineSeconds = &deadline
	h.create(pod)
	h.waitFor("never", "running", running)
	h.clock.Step(30 * time.Second)
	p := h.stepUntil("never", "failed", 100*time.Millisecond, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != podworker.ReasonDeadlineExceeded || p.Status.Message != podworker.MessageDeadlineExceeded {
		t.Fatalf("first Failed status: reason %q message %q", p.Status.Reason, p.Status.Message)
	}
}

func TestActiveDeadlineSetByUpdate(t *testing.T) {
	h := newHarness(t)
	pod := testPod("later", ctr("app", "run"))
	h.create(pod)
	h.waitFor("later", "running", running)
	h.clock.Step(time.Minute)
	newer := pod.DeepCopy()
	d := int64(90)
	newer.Spec.ActiveDeadlineSeconds = &d
	if err := h.p.UpdatePod(context.Background(), newer); err != nil {
		t.Fatal(err)
	}
	p := h.stepUntil("later", "failed", 100*time.Millisecond, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != podworker.ReasonDeadlineExceeded {
		t.Fatalf("reason = %q", p.Status.Reason)
	}
	if now := h.clock.Since(t0); now < 90*time.Second {
		t.Fatalf("failed at +%v, before the 90 s deadline", now)
	}
	// An already passed deadline fails at once.
	late := testPod("past", ctr("app", "run"))
	h.create(late)
	h.waitFor("past", "running", running)
	h.clock.Step(10 * time.Second)
	late = late.DeepCopy()
	one := int64(1)
	late.Spec.ActiveDeadlineSeconds = &one
	if err := h.p.UpdatePod(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	h.stepUntil("past", "failed", 100*time.Millisecond, func(p *corev1.Pod) bool { return p.Status.Reason == podworker.ReasonDeadlineExceeded })
}
