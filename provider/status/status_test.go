package status

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
)

var at = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// snap builds a container snapshot in a given state.
func snap(name string, state ctrstate.State, code int32, opts ...func(*ctrstate.Snapshot)) ctrstate.Snapshot {
	s := ctrstate.Snapshot{Name: name, State: state, Status: corev1.ContainerStatus{Name: name}}
	switch state {
	case ctrstate.Running, ctrstate.Unknown:
		s.Status.State.Running = &corev1.ContainerStateRunning{}
	case ctrstate.Exited:
		s.Terminated = &corev1.ContainerStateTerminated{ExitCode: code}
		s.Status.State.Terminated = s.Terminated.DeepCopy()
	default:
		s.Status.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func ready(s *ctrstate.Snapshot)   { s.Ready, s.Started = true, true }
func hasRun(s *ctrstate.Snapshot)  { s.HasRun = true }
func sidecar(s *ctrstate.Snapshot) { s.Sidecar, s.Init = true, true }

func TestPhase(t *testing.T) {
	W, R, E := ctrstate.Waiting, ctrstate.Running, ctrstate.Exited
	for _, tc := range []struct {
		name        string
		policy      corev1.RestartPolicy
		inits, apps []ctrstate.Snapshot
		want        corev1.PodPhase
	}{
		{"all waiting", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", W, 0)}, corev1.PodPending},
		{"one running one waiting", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", R, 0), snap("b", W, 0)}, corev1.PodPending},
		{"running", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", R, 0)}, corev1.PodRunning},
		{"restarting counts as stopped", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", W, 0, hasRun)}, corev1.PodRunning},
		{"all exited 0 under Never", corev1.RestartPolicyNever, nil, []ctrstate.Snapshot{snap("a", E, 0), snap("b", E, 0)}, corev1.PodSucceeded},
		{"one failed under Never", corev1.RestartPolicyNever, nil, []ctrstate.Snapshot{snap("a", E, 0), snap("b", E, 1)}, corev1.PodFailed},
		{"failed under OnFailure restarts", corev1.RestartPolicyOnFailure, nil, []ctrstate.Snapshot{snap("a", E, 1)}, corev1.PodRunning},
		{"succeeded under OnFailure", corev1.RestartPolicyOnFailure, nil, []ctrstate.Snapshot{snap("a", E, 0)}, corev1.PodSucceeded},
		{"exited under Always", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", E, 0)}, corev1.PodRunning},
		{"init running", corev1.RestartPolicyAlways, []ctrstate.Snapshot{snap("i", R, 0)}, []ctrstate.Snapshot{snap("a", W, 0)}, corev1.PodPending},
		{"init failed under Never", corev1.RestartPolicyNever, []ctrstate.Snapshot{snap("i", E, 2)}, []ctrstate.Snapshot{snap("a", W, 0)}, corev1.PodFailed},
		{"init failed under Always retries", corev1.RestartPolicyAlways, []ctrstate.Snapshot{snap("i", E, 2)}, []ctrstate.Snapshot{snap("a", W, 0)}, corev1.PodPending},
		{"sidecar does not gate", corev1.RestartPolicyAlways, []ctrstate.Snapshot{snap("s", R, 0, sidecar)}, []ctrstate.Snapshot{snap("a", R, 0)}, corev1.PodRunning},
		{"restored unknown counts as running", corev1.RestartPolicyAlways, nil, []ctrstate.Snapshot{snap("a", ctrstate.Unknown, 0)}, corev1.PodRunning},
		{"no containers", corev1.RestartPolicyAlways, nil, nil, corev1.PodPending},
	} {
		if got := Phase(tc.policy, tc.inits, tc.apps); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

func pod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:   corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways},
		Status: corev1.PodStatus{QOSClass: corev1.PodQOSBurstable}}
}

func condOf(st corev1.PodStatus, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func TestGenerateRunningPod(t *testing.T) {
	p := pod()
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	st := Generate(Input{Pod: p, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0, ready)}, PodIP: "10.0.0.2", HostIP: "10.1.0.1",
		StartTime: at, VMReady: true}, nil, at)
	if st.Phase != corev1.PodRunning || st.PodIP != "10.0.0.2" || st.PodIPs[0].IP != "10.0.0.2" || st.HostIPs[0].IP != "10.1.0.1" ||
		!st.StartTime.Time.Equal(at) || st.QOSClass != corev1.PodQOSBurstable {
		t.Fatalf("%+v", st)
	}
	var order []corev1.PodConditionType
	for _, c := range st.Conditions {
		order = append(order, c.Type)
		if c.Status != corev1.ConditionTrue {
			t.Errorf("condition %s = %s", c.Type, c.Status)
		}
	}
	want := []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled}
	if len(order) != len(want) {
		t.Fatalf("conditions %v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("conditions %v, want %v", order, want)
		}
	}
}

func TestGenerateNotReadyNamesContainers(t *testing.T) {
	st := Generate(Input{Pod: pod(), Inits: []ctrstate.Snapshot{snap("i", ctrstate.Running, 0)},
		Apps: []ctrstate.Snapshot{snap("a", ctrstate.Waiting, 0), snap("b", ctrstate.Waiting, 0)}}, nil, at)
	if c := condOf(st, corev1.PodInitialized); c.Status != corev1.ConditionFalse || c.Reason != "ContainersNotInitialized" || !strings.Contains(c.Message, "[i]") {
		t.Fatalf("Initialized %+v", c)
	}
	if c := condOf(st, corev1.PodReady); c.Reason != "ContainersNotReady" || c.Message != "containers with unready status: [a b]" {
		t.Fatalf("Ready %+v", c)
	}
	if c := condOf(st, corev1.PodReadyToStartContainers); c.Status != corev1.ConditionFalse {
		t.Fatalf("no VM yet: %+v", c)
	}
}

func TestGenerateTerminalPod(t *testing.T) {
	st := Generate(Input{Pod: pod(), Apps: []ctrstate.Snapshot{snap("a", ctrstate.Exited, 0)}, VMReady: true,
		Phase: corev1.PodFailed, Reason: "DeadlineExceeded", Message: "too long"}, nil, at)
	if st.Phase != corev1.PodFailed || st.Reason != "DeadlineExceeded" || st.Message != "too long" {
		t.Fatalf("%+v", st)
	}
	if c := condOf(st, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "PodCompleted" {
		t.Fatalf("Ready %+v", c)
	}
	if c := condOf(st, corev1.PodReadyToStartContainers); c.Status != corev1.ConditionFalse {
		t.Fatalf("a terminal pod is not ready to start containers: %+v", c)
	}
}

func TestReadinessGates(t *testing.T) {
	p := pod()
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	in := Input{Pod: p, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0, ready)}, VMReady: true}
	st := Generate(in, nil, at)
	if c := condOf(st, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" ||
		condOf(st, corev1.ContainersReady).Status != corev1.ConditionTrue {
		t.Fatalf("gate missing: %+v", st.Conditions)
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}}
	st = Generate(in, nil, at)
	if condOf(st, corev1.PodReady).Status != corev1.ConditionTrue || condOf(st, "example.com/lb").Status != corev1.ConditionTrue {
		t.Fatalf("gate true: %+v", st.Conditions)
	}
}

func TestTransitionTimesKept(t *testing.T) {
	in := Input{Pod: pod(), Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0, ready)}, VMReady: true}
	first := Generate(in, nil, at)
	later := Generate(in, &first, at.Add(time.Hour))
	if got := condOf(later, corev1.PodReady).LastTransitionTime.Time; !got.Equal(at) {
		t.Fatalf("an unchanged condition moved to %v", got)
	}
	in.Apps = []ctrstate.Snapshot{snap("a", ctrstate.Running, 0)}
	flipped := Generate(in, &later, at.Add(2*time.Hour))
	if got := condOf(flipped, corev1.PodReady).LastTransitionTime.Time; !got.Equal(at.Add(2 * time.Hour)) {
		t.Fatalf("a changed condition kept %v", got)
	}
}

func TestTerminationMessagesCapped(t *testing.T) {
	long := strings.Repeat("m", 10000)
	a := snap("a", ctrstate.Exited, 1)
	a.Status.State.Terminated.Message = long
	a.Status.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Message: long}
	b := snap("b", ctrstate.Exited, 1)
	b.Status.State.Terminated.Message = "short"
	st := Generate(Input{Pod: pod(), Apps: []ctrstate.Snapshot{a, b}}, nil, at)
	if n := len(st.ContainerStatuses[0].State.Terminated.Message); n != MaxPodTerminationMessageBytes/2 {
		t.Fatalf("message of %d bytes, want half of 12 KiB", n)
	}
	if n := len(st.ContainerStatuses[0].LastTerminationState.Terminated.Message); n != MaxPodTerminationMessageBytes/2 {
		t.Fatalf("last state's message of %d bytes", n)
	}
	if st.ContainerStatuses[1].State.Terminated.Message != "short" {
		t.Fatal("a short message was changed")
	}
	if len(a.Status.State.Terminated.Message) != 10000 {
		t.Fatal("Generate changed its input")
	}
}

func TestManagerPushesChangesInOrder(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	m := NewManager(clk)
	var mu sync.Mutex
	var pushed []*corev1.Pod
	p := pod()
	ready := false
	input := func() Input {
		s := snap("a", ctrstate.Running, 0)
		s.Ready = ready
		return Input{Pod: p, Apps: []ctrstate.Snapshot{s}, VMReady: true}
	}
	m.Update(p.UID, input) // before NotifyPods: kept, sent on registration
	m.SetNotify(func(p *corev1.Pod) { mu.Lock(); pushed = append(pushed, p); mu.Unlock() })
	if len(pushed) != 1 {
		t.Fatalf("registration sent %d statuses, want the one computed before", len(pushed))
	}
	m.Update(p.UID, input)
	if len(pushed) != 1 {
		t.Fatal("an unchanged status was pushed again")
	}
	ready = true
	clk.Step(time.Minute)
	m.Update(p.UID, input)
	if len(pushed) != 2 || condOf(pushed[1].Status, corev1.PodReady).Status != corev1.ConditionTrue {
		t.Fatalf("pushes %d", len(pushed))
	}
	if got, ok := m.Pod(p.UID); !ok || condOf(got.Status, corev1.PodReady).LastTransitionTime.Time != at.Add(time.Minute) {
		t.Fatalf("Pod = %+v %v", got, ok)
	}
	// A label change is pushed too: GetPod shows the latest object.
	p = p.DeepCopy()
	p.Labels = map[string]string{"x": "y"}
	m.Update(p.UID, input)
	if len(pushed) != 3 || pushed[2].Labels["x"] != "y" {
		t.Fatal("a metadata change was not pushed")
	}
	m.Forget(p.UID)
	if _, ok := m.Pod(p.UID); ok {
		t.Fatal("Forget kept the pod")
	}
}

func TestManagerNeverLeavesATerminalPhase(t *testing.T) {
	m := NewManager(testingclock.NewFakeClock(at))
	p := pod()
	m.Update(p.UID, func() Input {
		return Input{Pod: p, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0)}, Phase: corev1.PodFailed, Reason: "DeadlineExceeded"}
	})
	m.Update(p.UID, func() Input { return Input{Pod: p, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0)}} })
	got, _ := m.Pod(p.UID)
	if got.Status.Phase != corev1.PodFailed || got.Status.Reason != "DeadlineExceeded" {
		t.Fatalf("phase %s reason %s after a non-terminal update", got.Status.Phase, got.Status.Reason)
	}
	// Nor one the API server already had.
	done := pod()
	done.UID = "v"
	done.Status.Phase = corev1.PodSucceeded
	m.Update(done.UID, func() Input { return Input{Pod: done, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Waiting, 0)}} })
	if got, _ := m.Pod(done.UID); got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s", got.Status.Phase)
	}
}

func TestManagerPushesOfOnePodAreSerialised(t *testing.T) {
	m := NewManager(testingclock.NewFakeClock(at))
	p := pod()
	var mu sync.Mutex
	inside, overlap := 0, false
	m.SetNotify(func(*corev1.Pod) {
		mu.Lock()
		inside++
		if inside > 1 {
			overlap = true
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inside--
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Update(p.UID, func() Input {
				return Input{Pod: p, Apps: []ctrstate.Snapshot{snap("a", ctrstate.Running, 0)}, PodIP: "10.0.0." + string(rune('0'+i%10))}
			})
		}()
	}
	wg.Wait()
	if overlap {
		t.Fatal("two pushes of one pod overlapped")
	}
}
