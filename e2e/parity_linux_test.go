package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kubelet behaviours the provider gained against the kubelet's code
// (README, "Against the kubelet").

// TestNodeTerminationMessage: what a container writes to its
// terminationMessagePath, read from its root in the VM after it exited,
// and, under FallbackToLogsOnError, the end of the log of a failed
// container that wrote none.
func TestNodeTerminationMessage(t *testing.T) {
	ne := clusterNode(t)
	fileName, logsName := uniqueName("termmsg-file"), uniqueName("termmsg-logs")
	ne.apply(t, strings.NewReplacer("FILE_POD", fileName, "LOGS_POD", logsName).Replace(`
apiVersion: v1
kind: Pod
metadata: {name: FILE_POD}
spec:`+tolerate+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: BUSYBOX
    command: ["sh", "-c", "echo noise; printf 'all went well' > /dev/termination-log"]
---
apiVersion: v1
kind: Pod
metadata: {name: LOGS_POD}
spec:`+tolerate+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: BUSYBOX
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo first; echo 'cannot open the database' >&2; exit 3"]
`))
	p := ne.waitPod(t, fileName, "Succeeded", 2*time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Message != "all went well" {
		t.Fatalf("policy File: terminated %+v", term)
	}
	p = ne.waitPod(t, logsName, "Failed", 2*time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.ExitCode != 3 || !strings.Contains(term.Message, "cannot open the database") {
		t.Fatalf("policy FallbackToLogsOnError: terminated %+v", term)
	}
	// kubectl shows it where users look.
	if out := ne.kubectl(t, "get", "pod", logsName, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}"); !strings.Contains(out, "cannot open the database") {
		t.Fatalf("kubectl get: %q", out)
	}
}

// TestNodeActiveDeadlineSeconds: past its deadline the pod fails with
// DeadlineExceeded and its container is killed.
func TestNodeActiveDeadlineSeconds(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("deadline")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  activeDeadlineSeconds: 15
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: BUSYBOX, command: ["sleep", "3600"]}
`, name))
	ne.waitPod(t, name, "Running", 2*time.Minute, podRunning)
	p := ne.waitPod(t, name, "Failed with DeadlineExceeded", 2*time.Minute, func(p corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	if p.Status.Reason != "DeadlineExceeded" || p.Status.Message != "Pod was active on the node longer than the specified deadline" {
		t.Fatalf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	if term := p.Status.ContainerStatuses[0].State.Terminated; term.ExitCode != 143 && term.ExitCode != 137 {
		t.Fatalf("container not killed: %+v", term)
	}
	if got := p.Status.StartTime; got == nil {
		t.Fatal("no startTime")
	}
	events := ne.waitEvents(t, name, "", "{.items[*].reason}", func(s string) bool { return strings.Contains(s, "DeadlineExceeded") })
	if !strings.Contains(events, "DeadlineExceeded") {
		t.Fatalf("events %q lack DeadlineExceeded", events)
	}
}
