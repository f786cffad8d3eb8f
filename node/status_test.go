package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

// fakeHostReader is a scripted host.
type fakeHostReader struct {
	mu   sync.Mutex
	mem  hostinfo.Memory
	disk hostinfo.Disk
	err  error
}

func (h *fakeHostReader) Resources(string) (hostResources, hostinfo.Memory, hostinfo.Disk, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hostResources{CPUs: 4, MemoryBytes: h.mem.TotalBytes, DiskBytes: h.disk.TotalBytes}, h.mem, h.disk, h.err
}

func (h *fakeHostReader) set(f func(h *fakeHostReader)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

type statusHarness struct {
	s      *nodeStatus
	host   *fakeHostReader
	rt     *stubRuntime
	pushes chan *corev1.Node
}

func newStatusHarness(t *testing.T) *statusHarness {
	cfg := testConfig(t)
	rt := cfg.Provider.Runtime.(*stubRuntime)
	host := &fakeHostReader{mem: hostinfo.Memory{TotalBytes: 16 << 30, AvailableBytes: 8 << 30},
		disk: hostinfo.Disk{TotalBytes: 100 << 30, FreeBytes: 50 << 30}}
	h := &statusHarness{rt: rt, host: host, pushes: make(chan *corev1.Node, 100)}
	h.s = newNodeStatus(&cfg, newNodeObject(&cfg, hostFacts{Hostname: "mac-mini"}, 10250), host, rt.Check)
	h.s.notify = func(n *corev1.Node) { h.pushes <- n }
	return h
}

// round evaluates once and returns what was pushed (nil: nothing).
func (h *statusHarness) round(t *testing.T) *corev1.Node {
	t.Helper()
	h.s.evaluate(context.Background())
	select {
	case n := <-h.pushes:
		return n
	default:
		return nil
	}
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func TestHealthyNodeConditions(t *testing.T) {
	h := newStatusHarness(t)
	n := h.round(t)
	if n == nil {
		t.Fatal("the first round must push the node")
	}
	want := map[corev1.NodeConditionType][2]string{
		corev1.NodeReady:              {"True", "KubeletReady"},
		corev1.NodeMemoryPressure:     {"False", "KubeletHasSufficientMemory"},
		corev1.NodeDiskPressure:       {"False", "KubeletHasNoDiskPressure"},
		corev1.NodePIDPressure:        {"False", "KubeletHasSufficientPID"},
		corev1.NodeNetworkUnavailable: {"False", "VMNetworkReady"},
	}
	for typ, w := range want {
		c := condition(n, typ)
		if string(c.Status) != w[0] || c.Reason != w[1] || c.Message == "" || c.LastTransitionTime.IsZero() {
			t.Errorf("%s = %+v, want %v", typ, c, w)
		}
	}
	if q := n.Status.Capacity[corev1.ResourceMemory]; q.Value() != 16<<30 {
		t.Errorf("capacity = %v", n.Status.Capacity)
	}
	if n.Status.NodeInfo.KubeletVersion == "" || n.Labels["type"] != "virtual-kubelet" {
		t.Error("pushed node lost the base object's labels or NodeInfo")
	}
	// The repeat pushes of a change, then silence while nothing changes.
	if h.round(t) == nil || h.round(t) == nil {
		t.Fatal("a change must be pushed again in the next two rounds")
	}
	if n := h.round(t); n != nil {
		t.Fatal("nothing changed, nothing must be pushed")
	}
}

func TestPressureConditions(t *testing.T) {
	h := newStatusHarness(t)
	first := h.round(t)
	h.host.set(func(h *fakeHostReader) {
		h.mem.AvailableBytes = 50 << 20 // below 100 Mi
		h.disk.FreeBytes = 5 << 30      // 5 % of 100 Gi, above the 1 Gi minimum
	})
	n := h.round(t)
	if n == nil {
		t.Fatal("pressure change not pushed")
	}
	if c := condition(n, corev1.NodeMemoryPressure); c.Status != corev1.ConditionTrue || c.Reason != "KubeletHasInsufficientMemory" {
		t.Errorf("MemoryPressure = %+v", c)
	}
	if c := condition(n, corev1.NodeDiskPressure); c.Status != corev1.ConditionTrue || c.Reason != "KubeletHasDiskPressure" {
		t.Errorf("DiskPressure = %+v", c)
	}
	ready := condition(n, corev1.NodeReady)
	if ready.Status != corev1.ConditionTrue {
		t.Errorf("pressure alone must not make the node NotReady: %+v", ready)
	}
	if prev := condition(first, corev1.NodeReady).LastTransitionTime; !ready.LastTransitionTime.Equal(&prev) {
		t.Error("Ready's transition time moved though Ready did not change")
	}
}

func TestNotReadyIsPushedBeforePingFails(t *testing.T) {
	h := newStatusHarness(t)
	h.round(t)
	h.s.markRegistered()
	if err := h.s.Ping(context.Background()); err != nil {
		t.Fatalf("healthy node: Ping = %v", err)
	}
	h.rt.setCheck(errors.New("hypervisor unavailable: /dev/kvm missing"))
	n := h.round(t)
	ready := condition(n, corev1.NodeReady)
	if ready.Status != corev1.ConditionFalse || ready.Reason != "KubeletNotReady" || !strings.Contains(ready.Message, "/dev/kvm missing") {
		t.Fatalf("Ready = %+v", ready)
	}
	// The reason went out with Ping still passing, so virtual-kubelet
	// accepts the status update; from the next round Ping fails and the
	// lease stops.
	if err := h.s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping failed in the round that pushed the reason: %v", err)
	}
	h.round(t)
	if err := h.s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "/dev/kvm missing") {
		t.Fatalf("Ping = %v, want the reason", err)
	}
	// Recovery: Ping passes at once, Ready=True is pushed, and pushed
	// again in the next rounds in case virtual-kubelet refused the first.
	h.rt.setCheck(nil)
	n = h.round(t)
	if err := h.s.Ping(context.Background()); err != nil {
		t.Fatalf("recovered: Ping = %v", err)
	}
	if n == nil || condition(n, corev1.NodeReady).Status != corev1.ConditionTrue {
		t.Fatalf("recovery not pushed: %v", n)
	}
	for range 2 {
		if n := h.round(t); n == nil || condition(n, corev1.NodeReady).Status != corev1.ConditionTrue {
			t.Fatal("recovery not pushed again")
		}
	}
	if n := h.round(t); n != nil {
		t.Fatal("pushed a third time after a change")
	}
}

// A health check that runs out of time once (a slow switch status call on a
// loaded host) leaves the node Ready; only one that has gone unanswered
// for unansweredHealthLimit since it last passed makes it NotReady, and a
// node that never had an answer is NotReady from the start.
func TestUnansweredHealthCheckIsToleratedForAWhile(t *testing.T) {
	h := newStatusHarness(t)
	h.s.cfg.StatusInterval = 10 * time.Millisecond // each check's bound
	var slow sync.Mutex
	slowCheck := false
	h.s.health = func(ctx context.Context) error {
		slow.Lock()
		s := slowCheck
		slow.Unlock()
		if !s {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	setSlow := func(v bool) { slow.Lock(); slowCheck = v; slow.Unlock() }

	h.round(t)
	h.s.markRegistered()
	setSlow(true)
	for range 3 {
		h.round(t)
		if c := condition(h.s.node(), corev1.NodeReady); c.Status != corev1.ConditionTrue {
			t.Fatalf("one slow health check made the node %s: %s", c.Status, c.Message)
		}
		if err := h.s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping = %v after a slow health check", err)
		}
	}
	// Unanswered since the last pass for longer than the limit.
	h.s.mu.Lock()
	h.s.healthyAt = time.Now().Add(-unansweredHealthLimit)
	h.s.mu.Unlock()
	h.round(t)
	if c := condition(h.s.node(), corev1.NodeReady); c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "no answer for") {
		t.Fatalf("health unanswered for %v: Ready = %+v", unansweredHealthLimit, c)
	}
	setSlow(false)
	h.round(t)
	if c := condition(h.s.node(), corev1.NodeReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("answered again: Ready = %+v", c)
	}

	fresh := newStatusHarness(t)
	fresh.s.cfg.StatusInterval = 10 * time.Millisecond
	fresh.s.health = h.s.health
	setSlow(true)
	fresh.round(t)
	if c := condition(fresh.s.node(), corev1.NodeReady); c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "since the node started") {
		t.Fatalf("never answered: Ready = %+v", c)
	}
}

func TestDiskBelowMinimumIsNotReady(t *testing.T) {
	h := newStatusHarness(t)
	h.host.set(func(h *fakeHostReader) { h.disk.FreeBytes = 100 << 20 })
	n := h.round(t)
	ready := condition(n, corev1.NodeReady)
	if ready.Status != corev1.ConditionFalse || !strings.Contains(ready.Message, "below the minimum 1Gi") {
		t.Fatalf("Ready = %+v", ready)
	}
	// Not registered yet: virtual-kubelet would refuse to register a node
	// whose first Ping fails, so Ping passes until registration.
	h.round(t)
	if err := h.s.Ping(context.Background()); err != nil {
		t.Fatalf("unregistered node: Ping = %v", err)
	}
	h.s.markRegistered()
	if err := h.s.Ping(context.Background()); err == nil {
		t.Fatal("registered node with a full disk: Ping passed")
	}
}

func TestPingFailsWhenEvaluationStops(t *testing.T) {
	h := newStatusHarness(t)
	h.round(t)
	h.s.markRegistered()
	h.s.mu.Lock()
	h.s.evaluated = time.Now().Add(-time.Hour)
	h.s.mu.Unlock()
	if err := h.s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "last evaluated") {
		t.Fatalf("Ping = %v, want a stale-evaluation error", err)
	}
}

func TestNotifyNodeStatusLoopPushesChanges(t *testing.T) {
	h := newStatusHarness(t)
	h.s.cfg.StatusInterval = 10 * time.Millisecond
	for range 3 {
		h.round(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.s.NotifyNodeStatus(ctx, func(n *corev1.Node) { h.pushes <- n })
	h.host.set(func(h *fakeHostReader) { h.mem.AvailableBytes = 1 })
	select {
	case n := <-h.pushes:
		if condition(n, corev1.NodeMemoryPressure).Status != corev1.ConditionTrue {
			t.Fatalf("pushed %+v", n.Status.Conditions)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never pushed the change")
	}
}

func TestNodeEventsOnTransitions(t *testing.T) {
	h := newStatusHarness(t)
	rec := record.NewFakeRecorder(20)
	h.s.recorder = rec
	drain := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	h.round(t)
	first := strings.Join(drain(), "\n")
	for _, want := range []string{"Normal NodeReady", "Normal NodeHasSufficientMemory", "Normal NodeHasNoDiskPressure"} {
		if !strings.Contains(first, want) {
			t.Errorf("first round events lack %q:\n%s", want, first)
		}
	}
	h.round(t)
	if ev := drain(); len(ev) != 0 {
		t.Errorf("no transition, yet events %v", ev)
	}
	h.rt.setCheck(errors.New("no hypervisor"))
	h.round(t)
	if ev := drain(); len(ev) != 1 || !strings.Contains(ev[0], "Normal NodeNotReady") || !strings.Contains(ev[0], "no hypervisor") {
		t.Errorf("events = %v, want one NodeNotReady with the reason", ev)
	}
}
