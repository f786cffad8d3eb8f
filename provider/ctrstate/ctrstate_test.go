package ctrstate

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var at = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func app(name string) *corev1.Container { return &corev1.Container{Name: name, Image: "busybox"} }

func exit(code int32) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{ExitCode: code, Reason: ReasonError, FinishedAt: metav1.NewTime(at.Add(time.Minute))}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("%s: err = %v, want ErrInvalidTransition", what, err)
	}
}

func TestNewContainerWaits(t *testing.T) {
	r := New(app("a"), false, nil)
	s := r.Snapshot()
	if s.State != Waiting || s.Status.State.Waiting.Reason != ReasonContainerCreating || r.Instance() != 0 || s.HasRun {
		t.Fatalf("snapshot = %+v", s)
	}
	i := New(app("i"), true, nil)
	if w := i.Snapshot().Status.State.Waiting; w.Reason != ReasonPodInitializing || !i.Init() || i.Sidecar() {
		t.Fatalf("init: %+v", i.Snapshot())
	}
	always := corev1.ContainerRestartPolicyAlways
	c := app("s")
	c.RestartPolicy = &always
	if !New(c, true, nil).Sidecar() || New(c, false, nil).Sidecar() {
		t.Fatal("only an init container with restartPolicy Always is a sidecar")
	}
}

// TestLifeAndRestarts walks the main path: start, exit, back-off, start
// again; the restart count rises as the next instance starts.
func TestLifeAndRestarts(t *testing.T) {
	r := New(app("a"), false, nil)
	must(t, r.Start(0, "vm1", at))
	s := r.Snapshot()
	if s.State != Running || s.Status.ContainerID != "applevm://vm1-0" || !s.Status.State.Running.StartedAt.Time.Equal(at) {
		t.Fatalf("running: %+v", s.Status)
	}
	must(t, r.Exit(exit(3)))
	s = r.Snapshot()
	if s.State != Exited || s.Terminated.ExitCode != 3 || s.Status.State.Terminated.ContainerID != "applevm://vm1-0" ||
		!s.Terminated.StartedAt.Time.Equal(at) || s.Succeeded() {
		t.Fatalf("exited: %+v", s)
	}
	if r.Instance() != 1 {
		t.Fatalf("next instance = %d, want 1", r.Instance())
	}
	must(t, r.Wait("CrashLoopBackOff", "back-off 10s"))
	s = r.Snapshot()
	if s.Status.RestartCount != 0 || s.Status.LastTerminationState.Terminated.ExitCode != 3 || !s.HasRun || s.Status.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("backing off: %+v", s.Status)
	}
	refused(t, "start of a stale instance", r.Start(0, "vm1", at))
	must(t, r.Start(1, "vm1", at.Add(time.Hour)))
	if s := r.Snapshot(); s.Status.RestartCount != 1 || s.Instance != 1 || s.Status.ContainerID != "applevm://vm1-1" {
		t.Fatalf("restarted: %+v", s.Status)
	}
}

func TestRestartWithoutBackoffStartsFromExited(t *testing.T) {
	r := New(app("a"), false, nil)
	must(t, r.Start(0, "vm", at))
	must(t, r.Exit(exit(143)))
	must(t, r.Start(1, "vm", at))
	s := r.Snapshot()
	if s.Status.RestartCount != 1 || s.Status.LastTerminationState.Terminated.ExitCode != 143 {
		t.Fatalf("%+v", s.Status)
	}
}

func TestInvalidTransitions(t *testing.T) {
	r := New(app("a"), false, nil)
	refused(t, "exit while waiting", r.Exit(exit(0)))
	refused(t, "reattach while waiting", r.Reattach("vm"))
	_, err := r.SetReady(0, true)
	refused(t, "ready while waiting", err)
	_, err = r.SetStarted(0)
	refused(t, "started while waiting", err)
	must(t, r.Start(0, "vm", at))
	refused(t, "start while running", r.Start(0, "vm", at))
	refused(t, "wait while running", r.Wait("X", ""))
	refused(t, "fail start while running", r.FailStart("vm", exit(128)))
	must(t, r.Exit(exit(0)))
	refused(t, "exit twice", r.Exit(exit(0)))
	_, err = r.SetReady(0, true)
	refused(t, "ready after exit", err)
}

func TestProbeResultsOnlyForTheRunningInstance(t *testing.T) {
	r := New(app("a"), false, nil)
	must(t, r.Start(0, "vm", at))
	if changed, err := r.SetStarted(0); err != nil || !changed {
		t.Fatalf("started: %v %v", changed, err)
	}
	if changed, _ := r.SetStarted(0); changed {
		t.Fatal("started twice reports a change")
	}
	if changed, err := r.SetReady(0, true); err != nil || !changed {
		t.Fatalf("ready: %v %v", changed, err)
	}
	if changed, _ := r.SetReady(0, true); changed {
		t.Fatal("same readiness reports a change")
	}
	s := r.Snapshot()
	if !s.Ready || !s.Started || !s.Status.Ready || !*s.Status.Started {
		t.Fatalf("%+v", s.Status)
	}
	must(t, r.Exit(exit(1)))
	must(t, r.Start(1, "vm", at))
	if s := r.Snapshot(); s.Ready || s.Started {
		t.Fatal("a new instance starts neither started nor ready")
	}
	_, err := r.SetReady(0, true)
	refused(t, "a result of the old instance", err)
}

func TestFailStartCountsAsAnInstance(t *testing.T) {
	r := New(app("a"), false, nil)
	must(t, r.FailStart("vm", &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError"}))
	s := r.Snapshot()
	if s.State != Exited || s.Terminated.ContainerID != "applevm://vm-0" || s.Status.RestartCount != 0 {
		t.Fatalf("%+v", s)
	}
	must(t, r.Wait("CrashLoopBackOff", ""))
	must(t, r.FailStart("vm", &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError"}))
	if s := r.Snapshot(); s.Status.RestartCount != 1 || s.Terminated.ContainerID != "applevm://vm-1" {
		t.Fatalf("second failed start: %+v", s.Status)
	}
}

func TestLose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*Record)
		lost  bool
	}{
		{"waiting", func(*Record) {}, true},
		{"running", func(r *Record) { must(t, r.Start(0, "vm", at)) }, true},
		{"exited keeps its exit", func(r *Record) { must(t, r.Start(0, "vm", at)); must(t, r.Exit(exit(0))) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(app("a"), false, nil)
			tc.setup(r)
			if got := r.Lose(at); got != tc.lost {
				t.Fatalf("Lose = %v, want %v", got, tc.lost)
			}
			s := r.Snapshot()
			if s.State != Exited {
				t.Fatalf("state %s", s.State)
			}
			if tc.lost && (s.Terminated.Reason != ReasonStatusUnknown || s.Terminated.ExitCode != 137) {
				t.Fatalf("lost: %+v", s.Terminated)
			}
			if !tc.lost && s.Terminated.ExitCode != 0 {
				t.Fatalf("kept: %+v", s.Terminated)
			}
		})
	}
}

func TestRestoredFromAnEarlierRun(t *testing.T) {
	last := &corev1.ContainerStateTerminated{ExitCode: 2}
	running := &corev1.ContainerStatus{Name: "a", RestartCount: 4, ImageID: "img@sha256:1",
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}},
		LastTerminationState: corev1.ContainerState{Terminated: last}}
	r := New(app("a"), false, running)
	s := r.Snapshot()
	if s.State != Unknown || s.Status.State.Running == nil || s.Status.RestartCount != 4 || s.Status.ImageID != "img@sha256:1" ||
		s.Status.LastTerminationState.Terminated.ExitCode != 2 || r.Instance() != 4 {
		t.Fatalf("restored: %+v", s.Status)
	}
	refused(t, "start while unknown", r.Start(4, "vm", at))
	must(t, r.Reattach("vm"))
	if s := r.Snapshot(); s.State != Running || !s.StartedAt.Equal(at) || s.Status.ContainerID != "applevm://vm-4" {
		t.Fatalf("reattached: %+v", s.Status)
	}

	gone := New(app("a"), false, running)
	must(t, gone.Wait(ReasonContainerCreating, ""))
	if gone.Instance() != 4 {
		t.Fatal("a container whose VM is gone starts again as the same instance")
	}
	ended := New(app("a"), false, running)
	must(t, ended.Exit(exit(7)))
	if s := ended.Snapshot(); s.Terminated.ExitCode != 7 || !s.Terminated.StartedAt.Time.Equal(at) {
		t.Fatalf("ended while away: %+v", s.Terminated)
	}

	done := &corev1.ContainerStatus{Name: "i", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: ReasonCompleted}}}
	if s := New(app("i"), true, done).Snapshot(); !s.Succeeded() {
		t.Fatalf("a finished init container stays finished: %+v", s)
	}
	if s := New(app("i"), false, done).Snapshot(); s.State != Waiting {
		t.Fatalf("an app container that exited runs again: %+v", s)
	}
}

func TestSetImage(t *testing.T) {
	r := New(app("a"), false, nil)
	r.SetImage("busybox:2", "busybox@sha256:2")
	if s := r.Snapshot().Status; s.Image != "busybox:2" || s.ImageID != "busybox@sha256:2" {
		t.Fatalf("%+v", s)
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{Waiting: "waiting", Running: "running", Exited: "exited", Unknown: "unknown", State(9): "State(9)"} {
		if s.String() != want {
			t.Errorf("%d = %q, want %q", int(s), s.String(), want)
		}
	}
	if ContainerID("", 1) != "" {
		t.Error("no VM, no container id")
	}
}
