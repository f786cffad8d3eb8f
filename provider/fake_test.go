package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeRuntime is an in-memory vmruntime.Runtime for the pod logic's unit
// tests; its processes wait on the test's fake clock. A process's args are
// a script of steps, run in order:
//
//	exit N [S]        exit with N after S seconds of the fake clock (default 0)
//	run               run until signalled
//	ignoreterm        run until SIGKILL
//	true / false      exit 0 / 1 (probe helpers)
//	flag NAME         exit 0 if the runtime's flag NAME is set, else 1
//	setflag NAME      set the runtime's flag NAME and exit 0
//	log TEXT          write a line to the container's log (as the shim does)
//	file PATH TEXT    write TEXT to PATH in the container's root
type fakeRuntime struct {
	clock *testingclock.FakeClock

	mu        sync.Mutex
	images    map[string]vmruntime.ImageInfo
	vms       map[string]*fakeVM
	created   []string // container names in creation order
	starts    []string // "container/process" in start order
	flags     map[string]bool
	createErr error
	// gates hold a pull ("pull/<ref>") or a VM creation ("create/<image>")
	// until closed; blocked lists the ones waiting (head-of-line tests).
	gates   map[string]chan struct{}
	blocked map[string]bool
}

func newFakeRuntime(clk *testingclock.FakeClock) *fakeRuntime {
	return &fakeRuntime{
		clock: clk,
		images: map[string]vmruntime.ImageInfo{"busybox": {Ref: "docker.io/library/busybox:latest", ID: "docker.io/library/busybox@sha256:aa", Cmd: []string{"run"},
			Pulled: true, PullDuration: 1500 * time.Millisecond, Size: 1234}},
		vms:   map[string]*fakeVM{},
		flags: map[string]bool{},
		gates: map[string]chan struct{}{}, blocked: map[string]bool{},
	}
}

// hold makes the pull or creation called key ("pull/<ref>",
// "create/<image>") wait until the returned function is called.
func (r *fakeRuntime) hold(key string) (release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	r.gates[key] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// wait blocks while key is held, marking it blocked meanwhile.
func (r *fakeRuntime) wait(ctx context.Context, key string) error {
	r.mu.Lock()
	ch := r.gates[key]
	if ch != nil {
		r.blocked[key] = true
	}
	r.mu.Unlock()
	if ch == nil {
		return nil
	}
	defer func() {
		r.mu.Lock()
		delete(r.blocked, key)
		r.mu.Unlock()
	}()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *fakeRuntime) isBlocked(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blocked[key]
}

func (r *fakeRuntime) setFlag(name string, v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flags[name] = v
}

func (r *fakeRuntime) flag(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flags[name]
}

func (r *fakeRuntime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, secrets []image.PullSecret, pulling func()) (vmruntime.ImageInfo, error) {
	if err := r.wait(ctx, "pull/"+ref); err != nil {
		return vmruntime.ImageInfo{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[ref]
	if !ok {
		if policy == corev1.PullNever {
			return vmruntime.ImageInfo{}, vmruntime.ErrNeverPull
		}
		return vmruntime.ImageInfo{}, fmt.Errorf("pull %s: manifest unknown", ref)
	}
	if img.Pulled && pulling != nil {
		pulling()
	}
	return img, nil
}

func (r *fakeRuntime) CreateVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	if err := r.wait(ctx, "create/"+cfg.ImageRef); err != nil {
		return nil, fmt.Errorf("create VM: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.createErr != nil {
		return nil, r.createErr
	}
	if _, ok := r.vms[cfg.ID]; ok {
		return nil, fmt.Errorf("VM %s exists", cfg.ID)
	}
	vm := &fakeVM{rt: r, cfg: cfg, ip: "10.89.0." + strconv.Itoa(len(r.vms)+2), procs: map[string]*fakeProc{}, running: true, root: map[string][]byte{}}
	r.vms[cfg.ID] = vm
	r.created = append(r.created, cfg.Labels[podworker.LabelContainer])
	return vm, nil
}

func (r *fakeRuntime) VMs(ctx context.Context) ([]vmruntime.VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []vmruntime.VM
	for _, vm := range r.vms {
		out = append(out, vm)
	}
	return out, nil
}

func (r *fakeRuntime) Check(ctx context.Context) error { return nil }

func (r *fakeRuntime) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vms)
}

func (r *fakeRuntime) vm(podUID, containerName string) *fakeVM {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vms[podworker.VMID(podUID, containerName)]
}

func (r *fakeRuntime) startOrder() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.starts...)
}

type fakeVM struct {
	rt      *fakeRuntime
	cfg     container.VMConfig
	ip      string
	mu      sync.Mutex
	procs   map[string]*fakeProc
	running bool
	resets  int
	files   map[string][]container.File // files volumes, by name
	root    map[string][]byte           // the container's root filesystem
	signals []string                    // "process/signal"
	// scratchUsed is the writable layer's usage Stats reports.
	scratchUsed uint64
}

type fakeProc struct {
	vm      *fakeVM
	args    []string
	size    container.TermSize // the initial terminal size
	logName string
	started time.Time
	done    chan struct{}
	exit    container.ExitStatus
	sig     chan syscall.Signal
	// exitTimer ends a timed exit (see Start).
	exitTimer clock.Timer
}

func (v *fakeVM) ID() string                { return v.cfg.ID }
func (v *fakeVM) Labels() map[string]string { return v.cfg.Labels }
func (v *fakeVM) IP() string                { return v.ip }
func (v *fakeVM) Running(ctx context.Context) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.running
}

func (v *fakeVM) Reset(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.resets++
	v.root = map[string][]byte{}
	return nil
}

func (v *fakeVM) resetCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.resets
}

func (v *fakeVM) Stats(context.Context) (container.Stats, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return container.Stats{ScratchUsedBytes: v.scratchUsed}, nil
}

func (v *fakeVM) Start(ctx context.Context, p container.ProcessConfig) (time.Time, error) {
	if len(p.Args) > 0 && p.Args[0] == "notfound" {
		return time.Time{}, fmt.Errorf("%q: %w in $PATH", p.Args[0], container.ErrCommandNotFound)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.procs[p.ID]; ok {
		return time.Time{}, fmt.Errorf("process %s exists", p.ID)
	}
	fp := &fakeProc{vm: v, args: p.Args, size: container.TermSize{Rows: p.Rows, Cols: p.Cols}, logName: p.LogName, started: v.rt.clock.Now(), done: make(chan struct{}), sig: make(chan syscall.Signal, 4)}
	// A timed exit's timer starts with the process, so a test that saw
	// the container running may step the clock past it.
	for i := 0; i < len(p.Args); {
		switch p.Args[i] {
		case "log":
			i += 2
			continue
		case "file":
			i += 3
			continue
		case "exit":
			if i+2 < len(p.Args) {
				secs, _ := strconv.Atoi(p.Args[i+2])
				fp.exitTimer = v.rt.clock.NewTimer(time.Duration(secs) * time.Second)
			}
		}
		break
	}
	v.procs[p.ID] = fp
	v.rt.mu.Lock()
	v.rt.starts = append(v.rt.starts, v.cfg.Labels[podworker.LabelContainer]+"/"+p.ID)
	v.rt.mu.Unlock()
	go fp.run()
	return fp.started, nil
}

func (fp *fakeProc) finish(code, sig int) {
	fp.exit = container.ExitStatus{Code: code, Signal: sig, StartedAt: fp.started, FinishedAt: fp.vm.rt.clock.Now()}
	close(fp.done)
}

// run interprets the process's script.
func (fp *fakeProc) run() {
	args := fp.args
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	rt := fp.vm.rt
	for {
		switch arg(0) {
		case "log":
			fp.vm.appendLog(fp.logName, arg(1))
			args = args[2:]
			continue
		case "file":
			fp.vm.mu.Lock()
			fp.vm.root[arg(1)] = []byte(arg(2))
			fp.vm.mu.Unlock()
			args = args[3:]
			continue
		case "exit":
			code, _ := strconv.Atoi(arg(1))
			if fp.exitTimer == nil {
				fp.finish(code, 0)
				return
			}
			defer fp.exitTimer.Stop()
			select {
			case <-fp.exitTimer.C():
				fp.finish(code, 0)
			case s := <-fp.sig:
				fp.finish(128+int(s), int(s))
			}
		case "true":
			fp.finish(0, 0)
		case "false":
			fp.finish(1, 0)
		case "setflag":
			rt.setFlag(arg(1), true)
			fp.finish(0, 0)
		case "flag":
			if rt.flag(arg(1)) {
				fp.finish(0, 0)
			} else {
				fp.finish(1, 0)
			}
		case "ignoreterm":
			for s := range fp.sig {
				if s == syscall.SIGKILL {
					fp.finish(137, 9)
					return
				}
			}
		default: // run
			s := <-fp.sig
			fp.finish(128+int(s), int(s))
		}
		return
	}
}

// appendLog writes a CRI log line as the shim does.
func (v *fakeVM) appendLog(name, text string) {
	if name == "" {
		return
	}
	path := filepath.Join(v.cfg.LogDir, name+".log")
	// Errors only happen after the test ended (its directory is gone).
	if err := os.MkdirAll(v.cfg.LogDir, 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s stdout F %s\n", v.rt.clock.Now().Format(time.RFC3339Nano), text)
}

func (v *fakeVM) proc(id string) (*fakeProc, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fp, ok := v.procs[id]
	if !ok {
		return nil, fmt.Errorf("process %s: %w", id, container.ErrNotFound)
	}
	return fp, nil
}

func (v *fakeVM) Wait(ctx context.Context, id string) (container.ExitStatus, error) {
	fp, err := v.proc(id)
	if err != nil {
		return container.ExitStatus{}, err
	}
	select {
	case <-fp.done:
		return fp.exit, nil
	case <-ctx.Done():
		return container.ExitStatus{}, ctx.Err()
	}
}

func (v *fakeVM) Exec(ctx context.Context, p container.ProcessConfig, stdio container.IO) (container.ExitStatus, error) {
	if _, err := v.Start(ctx, p); err != nil {
		return container.ExitStatus{}, err
	}
	return v.Wait(ctx, p.ID)
}

func (v *fakeVM) Attach(ctx context.Context, id string, stdio container.IO) error { return nil }

func (v *fakeVM) Signal(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.signals = append(v.signals, id+"/"+sig.String())
	for pid, fp := range v.procs {
		if pid == id || all {
			select {
			case fp.sig <- sig:
			default:
			}
		}
	}
	return nil
}

func (v *fakeVM) WriteFiles(ctx context.Context, vol string, files []container.File) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.files == nil {
		v.files = map[string][]container.File{}
	}
	v.files[vol] = files
	return nil
}

func (v *fakeVM) volume(name string) []container.File {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.files[name]
}

func (v *fakeVM) ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, ok := v.root[path]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", path, container.ErrNotFound)
	}
	if int64(len(b)) > max {
		b = b[int64(len(b))-max:]
	}
	return append([]byte{}, b...), nil
}

func (v *fakeVM) Forward(ctx context.Context, port uint16, conn io.ReadWriteCloser) error {
	return errors.New("not in the fake")
}

// Listeners answers "nothing listens" and then waits, as an idle guest does.
func (v *fakeVM) Listeners(ctx context.Context, known string, wait time.Duration) ([]network.Port, string, error) {
	if known == "" {
		return nil, "empty", nil
	}
	<-ctx.Done()
	return nil, "", ctx.Err()
}

func (v *fakeVM) SetRelays(ctx context.Context, via netip.AddrPort, ports []uint16) ([]uint16, error) {
	return nil, nil
}

func (v *fakeVM) Delete(ctx context.Context) error {
	v.mu.Lock()
	v.running = false
	v.mu.Unlock()
	v.rt.mu.Lock()
	defer v.rt.mu.Unlock()
	delete(v.rt.vms, v.cfg.ID)
	return nil
}

// session is one node process's view of the fake runtime; crash ends it
// as a killed process ends: its calls never return, its VMs stay.
type session struct {
	*fakeRuntime
	dead chan struct{}
}

func (s *session) crash() { close(s.dead) }

func (s *session) CreateVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	vm, err := s.fakeRuntime.CreateVM(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &sessionVM{fakeVM: vm.(*fakeVM), s: s}, nil
}

func (s *session) VMs(ctx context.Context) ([]vmruntime.VM, error) {
	vms, _ := s.fakeRuntime.VMs(ctx)
	for i, vm := range vms {
		vms[i] = &sessionVM{fakeVM: vm.(*fakeVM), s: s}
	}
	return vms, nil
}

type sessionVM struct {
	*fakeVM
	s *session
}

func (v *sessionVM) Wait(ctx context.Context, id string) (container.ExitStatus, error) {
	done := make(chan struct{})
	var st container.ExitStatus
	var err error
	go func() {
		defer close(done)
		st, err = v.fakeVM.Wait(ctx, id)
	}()
	select {
	case <-done:
		select {
		case <-v.s.dead:
		default:
			return st, err
		}
	case <-v.s.dead:
	}
	<-ctx.Done()
	<-make(chan struct{}) // a dead node process does nothing more
	return st, err
}

func (v *sessionVM) Delete(ctx context.Context) error {
	select {
	case <-v.s.dead:
		return nil
	default:
		return v.fakeVM.Delete(ctx)
	}
}

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// harness runs a Provider over the fake runtime on a fake clock and records
// what it reports.
type harness struct {
	t       *testing.T
	clock   *testingclock.FakeClock
	rt      *fakeRuntime
	sess    *session
	p       *Provider
	rec     *record.FakeRecorder
	objects *fakeObjects
	mu      sync.Mutex
	last    map[string]*corev1.Pod
	changed chan struct{} // closed and replaced at every push
	seen    []string      // events read by waitEvent
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	return newHarnessOn(t, clk, newFakeRuntime(clk))
}

// newHarnessOn runs a new Provider (a new node process) over rt.
func newHarnessOn(t *testing.T, clk *testingclock.FakeClock, rt *fakeRuntime) *harness {
	t.Helper()
	sess := &session{fakeRuntime: rt, dead: make(chan struct{})}
	h := &harness{t: t, clock: clk, rt: rt, sess: sess, rec: record.NewFakeRecorder(1000), last: map[string]*corev1.Pod{}, changed: make(chan struct{}),
		objects: &fakeObjects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}}
	p, err := New(Config{
		NodeName: "mac", NodeIP: "10.201.0.2", Root: t.TempDir(), Runtime: sess, Objects: h.objects, Recorder: h.rec,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods: resource.MustParse("10")},
		VMOverheadBytes: 64 << 20, BackoffInitial: 10 * time.Second, BackoffMax: 160 * time.Second,
		VolumeSyncPeriod: time.Minute, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	// Registered after t.TempDir, so it runs before the root is removed.
	t.Cleanup(h.endWorkers)
	p.NotifyPods(context.Background(), func(pod *corev1.Pod) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.last[pod.Namespace+"/"+pod.Name] = pod
		close(h.changed)
		h.changed = make(chan struct{})
	})
	return h
}

func (h *harness) pod(name string) (*corev1.Pod, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last["ns/"+name], h.changed
}

// endWorkers ends every pod worker when the test ends, as DeletePod would:
// a worker left running (a crash-looping container's restarts, a volume
// sync) would write into the state root while the test removes it. A
// crashed session's workers are stopped but not waited for: like a killed
// process's, their calls to the runtime never return.
func (h *harness) endWorkers() {
	workers := h.p.allWorkers()
	for _, w := range workers {
		w.Terminate(0, nil)
	}
	select {
	case <-h.sess.dead:
		return
	default:
	}
	guard := time.NewTimer(waitTimeout)
	defer guard.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for _, w := range workers {
		for done := false; !done; {
			select {
			case <-w.Done():
				done = true
			case <-tick.C:
				// Stops, kills and back-offs wait on the fake clock.
				h.clock.Step(time.Second)
			case <-guard.C:
				h.t.Errorf("pod worker %s did not end within %v of the test's end", w.Pod().Name, waitTimeout)
				return
			}
		}
	}
}

// waitTimeout bounds how long a test waits for the provider's goroutines
// to report something; it is a failure guard, never a measured time.
const waitTimeout = 10 * time.Second

// waitFor waits for a pushed status of pod name for which cond holds.
func (h *harness) waitFor(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	guard := time.NewTimer(waitTimeout)
	defer guard.Stop()
	for {
		p, changed := h.pod(name)
		if p != nil && cond(p) {
			return p
		}
		select {
		case <-changed:
		case <-guard.C:
			if p != nil {
				h.t.Fatalf("pod %s never %s; last status: phase=%s reason=%s containers=%+v init=%+v", name, what, p.Status.Phase, p.Status.Reason, p.Status.ContainerStatuses, p.Status.InitContainerStatuses)
			}
			h.t.Fatalf("pod %s never %s; no status reported", name, what)
		}
	}
}

// stepUntil advances the fake clock by step until a pushed status of pod
// name satisfies cond, letting the goroutines a step woke run between
// steps (a push, or a millisecond). Assertions are on the fake clock's
// times and the statuses, never on how long this took.
func (h *harness) stepUntil(name, what string, step time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	guard := time.NewTimer(waitTimeout)
	defer guard.Stop()
	for {
		p, changed := h.pod(name)
		if p != nil && cond(p) {
			return p
		}
		h.clock.Step(step)
		select {
		case <-changed:
		case <-time.After(time.Millisecond):
		case <-guard.C:
			h.t.Fatalf("pod %s never %s", name, what)
		}
	}
}

// eventually waits for a condition that no status push announces (VMs
// deleted, an object removed), checking every millisecond.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	guard := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(guard) {
			h.t.Fatalf("never %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitEvent waits for an event containing substr; events before it are
// kept for events().
func (h *harness) waitEvent(substr string) {
	h.t.Helper()
	guard := time.NewTimer(waitTimeout)
	defer guard.Stop()
	for {
		select {
		case e := <-h.rec.Events:
			h.seen = append(h.seen, e)
			if strings.Contains(e, substr) {
				return
			}
		case <-guard.C:
			h.t.Fatalf("no event %q in %q", substr, h.seen)
		}
	}
}

func (h *harness) events() []string {
	out := h.seen
	h.seen = nil
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (h *harness) create(pod *corev1.Pod) {
	h.t.Helper()
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		h.t.Fatal(err)
	}
}

func testPod(name string, containers ...corev1.Container) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid--" + name)},
		Spec: corev1.PodSpec{
			NodeName: "mac", Containers: containers, RestartPolicy: corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace, EnableServiceLinks: ptrTo(false),
		},
	}
}

func ctr(name string, args ...string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent, Command: args}
}

func ptrTo[T any](v T) *T { return &v }

func hasEventIn(events []string, substr string) bool {
	for _, e := range events {
		if strings.Contains(e, substr) {
			return true
		}
	}
	return false
}
