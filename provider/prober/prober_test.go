package prober

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	testingclock "k8s.io/utils/clock/testing"
)

var at = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// target answers exec probes from a scripted function.
type target struct {
	mu    sync.Mutex
	code  int
	out   string
	err   error
	calls int
	addr  string
	block bool
}

func (t *target) Exec(ctx context.Context, args []string) (int, []byte, error) {
	t.mu.Lock()
	t.calls++
	block, code, out, err := t.block, t.code, t.out, t.err
	t.mu.Unlock()
	if block {
		<-ctx.Done()
		return 0, nil, ctx.Err()
	}
	return code, []byte(out), err
}

func (t *target) Address() string { return t.addr }

func (t *target) DialContext(ctx context.Context, netw, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, netw, addr)
}

func (t *target) set(code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.code = code
}

// recorder collects results and events.
type recorder struct {
	mu      sync.Mutex
	results []Result
	events  []string
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 100)} }

func (r *recorder) report(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *recorder) event(typ, reason, msg string) {
	r.mu.Lock()
	r.events = append(r.events, typ+" "+reason+" "+msg)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

// wait waits for a result satisfying cond (a failure guard bounds it).
func (r *recorder) wait(t *testing.T, what string, cond func(Result) bool) Result {
	t.Helper()
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for {
		r.mu.Lock()
		for _, res := range r.results {
			if cond(res) {
				r.mu.Unlock()
				return res
			}
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-guard.C:
			t.Fatalf("never %s; results %+v", what, r.results)
		}
	}
}

func (r *recorder) count(kind Kind, success bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, res := range r.results {
		if res.Kind == kind && res.Success == success {
			n++
		}
	}
	return n
}

func execProbe(period, failures, successes int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}},
		PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: successes}
}

func is(kind Kind, ok bool) func(Result) bool {
	return func(r Result) bool { return r.Kind == kind && r.Success == ok }
}

// step advances the clock until cond holds, letting woken goroutines run.
func step(t *testing.T, clk *testingclock.FakeClock, r *recorder, d time.Duration, cond func() bool) {
	t.Helper()
	guard := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(guard) {
			t.Fatal("condition never held")
		}
		clk.Step(d)
		select {
		case <-r.changed:
		case <-time.After(time.Millisecond):
		}
	}
}

func TestNoProbesMeansStartedAndReady(t *testing.T) {
	r := newRecorder()
	m := NewManager(testingclock.NewFakeClock(at), r.report, r.event)
	m.Add(3, corev1.Container{Name: "a"}, &target{})
	defer m.Stop()
	r.wait(t, "started", is(Startup, true))
	res := r.wait(t, "ready", is(Readiness, true))
	if res.Container != "a" || res.Instance != 3 {
		t.Fatalf("%+v", res)
	}
}

func TestReadinessThresholds(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	r := newRecorder()
	m := NewManager(clk, r.report, r.event)
	defer m.Stop()
	tg := &target{code: 1}
	m.Add(0, corev1.Container{Name: "a", ReadinessProbe: execProbe(10, 2, 2)}, tg)
	r.wait(t, "started", is(Startup, true))
	step(t, clk, r, time.Second, func() bool { return r.count(Readiness, false) > 0 })
	tg.mu.Lock()
	calls := tg.calls
	tg.mu.Unlock()
	if calls < 2 {
		t.Fatalf("unready after %d failures, want the threshold of 2", calls)
	}
	tg.set(0)
	step(t, clk, r, time.Second, func() bool { return r.count(Readiness, true) > 0 })
	if clk.Since(at) < 30*time.Second {
		t.Fatalf("ready after %v: two failures and two successes take at least three periods", clk.Since(at))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) < 2 || !strings.Contains(r.events[0], "Warning Unhealthy Readiness probe failed: command [\"check\"] exited with 1") {
		t.Fatalf("events %q", r.events)
	}
}

func TestLivenessFailureReportsARestart(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	r := newRecorder()
	m := NewManager(clk, r.report, r.event)
	defer m.Stop()
	p := execProbe(5, 3, 0)
	p.InitialDelaySeconds = 20
	m.Add(1, corev1.Container{Name: "web", LivenessProbe: p}, &target{code: 2, out: "dead"})
	step(t, clk, r, time.Second, func() bool { return r.count(Liveness, false) > 0 })
	res := r.wait(t, "liveness failure", is(Liveness, false))
	if res.Message != "Container web failed liveness probe, will be restarted" || res.Instance != 1 {
		t.Fatalf("%+v", res)
	}
	if d := clk.Since(at); d < 30*time.Second {
		t.Fatalf("gave up after %v: 20 s delay and three failures 5 s apart take 30 s", d)
	}
}

func TestStartupGatesTheOthers(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	r := newRecorder()
	m := NewManager(clk, r.report, r.event)
	defer m.Stop()
	tg := &target{code: 1}
	c := corev1.Container{Name: "a", StartupProbe: execProbe(1, 100, 0), LivenessProbe: execProbe(1, 1, 0)}
	m.Add(0, c, tg)
	for range 5 {
		clk.Step(time.Second)
		time.Sleep(time.Millisecond)
	}
	if r.count(Startup, true) != 0 || r.count(Liveness, false) != 0 {
		t.Fatal("liveness ran before startup passed")
	}
	tg.set(0)
	step(t, clk, r, time.Second, func() bool { return r.count(Startup, true) > 0 })
	r.wait(t, "ready without a readiness probe", is(Readiness, true))
}

func TestStartupFailureGivesUp(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	r := newRecorder()
	m := NewManager(clk, r.report, r.event)
	defer m.Stop()
	m.Add(0, corev1.Container{Name: "a", StartupProbe: execProbe(1, 2, 0)}, &target{code: 1})
	step(t, clk, r, time.Second, func() bool { return r.count(Startup, false) > 0 })
	res := r.wait(t, "startup failure", is(Startup, false))
	if !strings.Contains(res.Message, "failed startup probe") {
		t.Fatalf("%+v", res)
	}
}

func TestRemoveStopsResults(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	r := newRecorder()
	m := NewManager(clk, r.report, r.event)
	tg := &target{code: 1}
	m.Add(0, corev1.Container{Name: "a", ReadinessProbe: execProbe(1, 1, 0)}, tg)
	step(t, clk, r, time.Second, func() bool { return r.count(Readiness, false) > 0 })
	m.Remove("a")
	n := len(r.results)
	tg.set(0)
	for range 5 {
		clk.Step(time.Second)
	}
	if len(r.results) != n {
		t.Fatal("results after Remove")
	}
	// A new instance replaces the old one's probes.
	m.Add(1, corev1.Container{Name: "a"}, tg)
	m.Add(2, corev1.Container{Name: "a"}, tg)
	res := r.wait(t, "instance 2 started", func(r Result) bool { return r.Instance == 2 && r.Kind == Startup })
	if !res.Success {
		t.Fatal(res)
	}
	m.Stop()
}

func TestProbeTimeoutOnTheClock(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	done := make(chan error, 1)
	tg := &target{block: true}
	go func() {
		done <- Check(context.Background(), clk, 3*time.Second, tg, corev1.Container{}, &execProbe(1, 1, 0).ProbeHandler)
	}()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(3 * time.Second)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the probe cancelled at its timeout", err)
	}
}

func TestHTTPAndTCPChecks(t *testing.T) {
	var gotPath, gotHost, gotAgent, gotHeader string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotHost, gotAgent, gotHeader = r.URL.RequestURI(), r.Host, r.UserAgent(), r.Header.Get("X-Test")
		if r.URL.Path == "/bad" {
			http.Error(w, "broken", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
			return
		}
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	tg := &target{addr: host}
	clk := testingclock.NewFakeClock(at)
	spec := corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	get := func(path string, p intstr.IntOrString) error {
		h := &corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: p,
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Test", Value: "1"}, {Name: "Host", Value: "svc.example"}}}}
		return Check(context.Background(), clk, 5*time.Second, tg, spec, h)
	}
	if err := get("/ok?x=1", intstr.FromString("http")); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/ok?x=1" || gotHost != "svc.example" || !strings.HasPrefix(gotAgent, "kube-probe/") || gotHeader != "1" {
		t.Fatalf("request %q host %q agent %q header %q", gotPath, gotHost, gotAgent, gotHeader)
	}
	// The body stays out of the message: it becomes an event anyone who
	// reads events sees, and a server may put anything in it.
	if err := get("/bad", intstr.FromInt32(int32(port))); err == nil || err.Error() != "HTTP probe failed with statuscode: 503" {
		t.Fatalf("503: %v", err)
	}
	// A redirect to another host is not followed; as in the kubelet a 3xx
	// is a success.
	if err := get("/redirect", intstr.FromInt32(int32(port))); err != nil {
		t.Fatalf("redirect: %v", err)
	}
	if err := get("/", intstr.FromString("nosuch")); err == nil {
		t.Fatal("an unknown named port must fail")
	}
	tcp := &corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}
	if err := Check(context.Background(), clk, 5*time.Second, tg, spec, tcp); err != nil {
		t.Fatalf("tcp: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	tcp.TCPSocket.Port = intstr.FromInt32(int32(closed))
	if err := Check(context.Background(), clk, 5*time.Second, tg, spec, tcp); err == nil {
		t.Fatal("tcp to a closed port succeeded")
	}
	if err := Check(context.Background(), clk, time.Second, tg, spec, &corev1.ProbeHandler{}); err == nil {
		t.Fatal("a probe without a handler must fail")
	}
}

func TestResolvePort(t *testing.T) {
	spec := corev1.Container{Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}}
	for _, tc := range []struct {
		in   intstr.IntOrString
		want int
		ok   bool
	}{
		{intstr.FromInt32(80), 80, true}, {intstr.FromString("web"), 8080, true}, {intstr.FromString("9090"), 9090, true},
		{intstr.FromInt32(0), 0, false}, {intstr.FromInt32(70000), 0, false}, {intstr.FromString("nope"), 0, false},
	} {
		got, err := resolvePort(tc.in, spec)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%v: %d %v", tc.in, got, err)
		}
	}
}

func TestHooks(t *testing.T) {
	clk := testingclock.NewFakeClock(at)
	tg := &target{code: 0}
	if err := RunHook(context.Background(), clk, tg, corev1.Container{}, &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}); err != nil {
		t.Fatal(err)
	}
	tg.set(4)
	tg.out = " it broke \n"
	if err := RunHook(context.Background(), clk, tg, corev1.Container{}, &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}); err == nil || !strings.HasSuffix(err.Error(), "exited with 4: it broke") {
		t.Fatalf("failing hook: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- RunHook(context.Background(), clk, tg, corev1.Container{}, &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}})
	}()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the sleep hook returned before the clock moved")
	default:
	}
	clk.Step(5 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := RunHook(context.Background(), clk, tg, corev1.Container{}, &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{}}); err == nil {
		t.Fatal("tcpSocket hooks are not supported")
	}
	if err := RunHook(context.Background(), clk, tg, corev1.Container{}, &corev1.LifecycleHandler{}); err == nil {
		t.Fatal("a hook without a handler must fail")
	}
}

func TestLimited(t *testing.T) {
	var b strings.Builder
	l := &Limited{W: &b, N: 5}
	n, err := l.Write([]byte("abc"))
	if n != 3 || err != nil {
		t.Fatal(n, err)
	}
	n, _ = l.Write([]byte("defgh"))
	if n != 5 || b.String() != "abcde" {
		t.Fatalf("%d %q", n, b.String())
	}
	if n, _ := l.Write([]byte("more")); n != 4 || b.String() != "abcde" {
		t.Fatal("writes past the limit must be dropped, not fail")
	}
	for k, want := range map[Kind]string{Startup: "Startup", Readiness: "Readiness", Liveness: "Liveness", Kind(7): "Kind(7)"} {
		if k.String() != want {
			t.Errorf("%q", k.String())
		}
	}
}
