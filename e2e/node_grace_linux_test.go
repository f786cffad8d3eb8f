package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestNodeStopWithinGracePeriod: a pod's containers are stopped as the
// kubelet stops them, SIGTERM delivered through each VM's agent, SIGKILL
// when the grace period ends. One container honours SIGTERM and exits 143
// long before its grace period is over; the other ignores it and is killed
// (137) once the grace period has passed. The stop comes from
// activeDeadlineSeconds, set once both run: unlike a deletion it leaves the
// pod, Failed, with its containers' exit codes and times to read.
func TestNodeStopWithinGracePeriod(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("grace")
	const grace = 8 * time.Second
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 8
  containers:
  - name: polite
    image: BUSYBOX
    command: ["sh", "-c", "trap 'echo got TERM; exit 143' TERM; echo up; while true; do sleep 1; done"]
  - name: stubborn
    image: BUSYBOX
    command: ["sh", "-c", "trap 'echo ignoring TERM' TERM; echo up; while true; do sleep 1; done"]
`, name))
	ne.waitPod(t, name, "Running with both containers", 4*time.Minute, func(p corev1.Pod) bool {
		if !podRunning(p) || len(p.Status.ContainerStatuses) != 2 {
			return false
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				return false
			}
		}
		return true
	})
	// "up" follows the trap: from then on SIGTERM is handled.
	for _, c := range []string{"polite", "stubborn"} {
		ne.waitContainerLogs(t, name, c, "up\n")
	}

	// Container times have whole seconds: compare them with the second
	// the stop was asked for (a lower bound of when SIGTERM went out).
	asked := time.Now().Truncate(time.Second)
	ne.kubectl(t, "patch", "pod", name, "-p", `{"spec":{"activeDeadlineSeconds":1}}`)
	// Failed: both containers ended, neither on its own. (The kubelet also
	// sets reason DeadlineExceeded; this node's status leaves it empty, seen
	// in this test's first run, so it is logged, not required, here.)
	p := ne.waitPod(t, name, "Failed", time.Minute+grace, func(p corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed
	})
	t.Logf("pod %s, reason %q", p.Status.Phase, p.Status.Reason)
	ended := map[string]*corev1.ContainerStateTerminated{}
	for _, cs := range p.Status.ContainerStatuses {
		ended[cs.Name] = cs.State.Terminated
	}
	polite, stubborn := ended["polite"], ended["stubborn"]
	if polite == nil || stubborn == nil {
		t.Fatalf("container states %+v", p.Status.ContainerStatuses)
	}
	politeAfter, stubbornAfter := polite.FinishedAt.Sub(asked), stubborn.FinishedAt.Sub(asked)
	t.Logf("polite: exit %d %s after %v; stubborn: exit %d %s after %v (whole seconds; grace %v)",
		polite.ExitCode, polite.Reason, politeAfter, stubborn.ExitCode, stubborn.Reason, stubbornAfter, grace)
	// Its own exit, within the grace period: before the stubborn one's
	// kill, which ends it. (Not a bound from asked: the grace period
	// starts when the node acts on the patch, seconds later on a loaded
	// machine, and both containers' times move with it.)
	if polite.ExitCode != 143 || politeAfter >= stubbornAfter {
		t.Errorf("polite: exit %d after %v; want 143 from its SIGTERM trap within the %v grace period", polite.ExitCode, politeAfter, grace)
	}
	// SIGTERM went out after asked; SIGKILL a grace period later.
	if stubborn.ExitCode != 137 || stubbornAfter < grace || stubbornAfter > grace+30*time.Second {
		t.Errorf("stubborn: exit %d after %v; want 137, killed when the %v grace period ended", stubborn.ExitCode, stubbornAfter, grace)
	}
	// Both got the SIGTERM.
	ne.waitContainerLogs(t, name, "polite", "got TERM")
	ne.waitContainerLogs(t, name, "stubborn", "ignoring TERM")
}

// waitContainerLogs polls one container's logs until they hold want.
func (ne *nodeEnv) waitContainerLogs(t *testing.T, pod, container, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := ne.c.Kubectl(context.Background(), "", "logs", pod, "-c", container)
		if err == nil && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s/%s: %q (%v), want %q", pod, container, out, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
