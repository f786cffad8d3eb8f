package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// fakeRuntime is an in-memory Runtime for the pod logic's unit tests. A
// process's args script its behaviour:
//
//	exit N [MS]     exits with N after MS milliseconds (default 0)
//	run             runs until signalled
//	ignoreterm      runs until SIGKILL
//	true / false    probe helpers: exit 0 / 1 at once
//	flag NAME       exits 0 if the runtime's flag NAME is set, else 1
//	setflag NAME    sets the runtime's flag NAME and exits 0
type fakeRuntime struct {
	mu        sync.Mutex
	images    map[string]ImageInfo
	sandboxes map[string]*fakeSandbox
	created   []string // container names in creation order
	starts    []string // "container/process" in start order
	flags     map[string]bool
	createErr error
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{
		images: map[string]ImageInfo{"busybox": {Ref: "docker.io/library/busybox:latest", ID: "docker.io/library/busybox@sha256:aa", Cmd: []string{"run"},
			Pulled: true, PullDuration: 1500 * time.Millisecond, Size: 1234}},
		sandboxes: map[string]*fakeSandbox{},
		flags:     map[string]bool{},
	}
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

func (r *fakeRuntime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, secrets []image.PullSecret, pulling func()) (ImageInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[ref]
	if !ok {
		return ImageInfo{}, fmt.Errorf("pull %s: manifest unknown", ref)
	}
	if img.Pulled && pulling != nil {
		pulling()
	}
	return img, nil
}

func (r *fakeRuntime) CreateSandbox(ctx context.Context, cfg container.SandboxConfig) (Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.createErr != nil {
		return nil, r.createErr
	}
	if _, ok := r.sandboxes[cfg.ID]; ok {
		return nil, fmt.Errorf("sandbox %s exists", cfg.ID)
	}
	sb := &fakeSandbox{rt: r, cfg: cfg, ip: "10.89.0." + strconv.Itoa(len(r.sandboxes)+2), procs: map[string]*fakeProc{}, running: true}
	r.sandboxes[cfg.ID] = sb
	r.created = append(r.created, cfg.Labels[labelContainer])
	return sb, nil
}

func (r *fakeRuntime) Sandbox(ctx context.Context, id string) (Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sb, ok := r.sandboxes[id]; ok {
		return sb, nil
	}
	return nil, container.ErrNotFound
}

func (r *fakeRuntime) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Sandbox
	for _, sb := range r.sandboxes {
		out = append(out, sb)
	}
	return out, nil
}

func (r *fakeRuntime) Check(ctx context.Context) error { return nil }

func (r *fakeRuntime) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sandboxes)
}

type fakeSandbox struct {
	rt      *fakeRuntime
	cfg     container.SandboxConfig
	ip      string
	mu      sync.Mutex
	procs   map[string]*fakeProc
	running bool
	resets  int
	files   map[string][]container.File
}

type fakeProc struct {
	args    []string
	started time.Time
	done    chan struct{}
	exit    container.ExitStatus
	sig     chan syscall.Signal
}

func (s *fakeSandbox) ID() string                { return s.cfg.ID }
func (s *fakeSandbox) Labels() map[string]string { return s.cfg.Labels }
func (s *fakeSandbox) IP() string                { return s.ip }
func (s *fakeSandbox) Running(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}
func (s *fakeSandbox) Reset(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resets++
	return nil
}
func (s *fakeSandbox) Stats(context.Context) (container.Stats, error) { return container.Stats{}, nil }

func (s *fakeSandbox) Start(ctx context.Context, p container.ProcessConfig) (time.Time, error) {
	if len(p.Args) > 0 && p.Args[0] == "notfound" {
		return time.Time{}, fmt.Errorf("%q: %w in $PATH", p.Args[0], container.ErrCommandNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.procs[p.ID]; ok {
		return time.Time{}, fmt.Errorf("process %s exists", p.ID)
	}
	fp := &fakeProc{args: p.Args, started: time.Now(), done: make(chan struct{}), sig: make(chan syscall.Signal, 4)}
	s.procs[p.ID] = fp
	s.rt.mu.Lock()
	s.rt.starts = append(s.rt.starts, s.cfg.Labels[labelContainer]+"/"+p.ID)
	s.rt.mu.Unlock()
	go fp.run(s.rt)
	return fp.started, nil
}

func (fp *fakeProc) finish(code, sig int) {
	fp.exit = container.ExitStatus{Code: code, Signal: sig, StartedAt: fp.started, FinishedAt: time.Now()}
	close(fp.done)
}

func (fp *fakeProc) run(rt *fakeRuntime) {
	arg := func(i int) string {
		if i < len(fp.args) {
			return fp.args[i]
		}
		return ""
	}
	switch arg(0) {
	case "exit":
		code, _ := strconv.Atoi(arg(1))
		ms, _ := strconv.Atoi(arg(2))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
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
}

func (s *fakeSandbox) proc(id string) (*fakeProc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp, ok := s.procs[id]
	if !ok {
		return nil, fmt.Errorf("process %s: %w", id, container.ErrNotFound)
	}
	return fp, nil
}

func (s *fakeSandbox) Wait(ctx context.Context, id string) (container.ExitStatus, error) {
	fp, err := s.proc(id)
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

func (s *fakeSandbox) Exec(ctx context.Context, p container.ProcessConfig, stdio container.IO) (container.ExitStatus, error) {
	if _, err := s.Start(ctx, p); err != nil {
		return container.ExitStatus{}, err
	}
	return s.Wait(ctx, p.ID)
}

func (s *fakeSandbox) Attach(ctx context.Context, id string, stdio container.IO) error { return nil }

func (s *fakeSandbox) Signal(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, fp := range s.procs {
		if pid == id || all {
			select {
			case fp.sig <- sig:
			default:
			}
		}
	}
	return nil
}

func (s *fakeSandbox) WriteFiles(ctx context.Context, vol string, files []container.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		s.files = map[string][]container.File{}
	}
	s.files[vol] = files
	return nil
}

func (s *fakeSandbox) Forward(ctx context.Context, port uint16, conn io.ReadWriteCloser) error {
	return errors.New("not in the fake")
}

func (s *fakeSandbox) Stop(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return nil
}

func (s *fakeSandbox) Delete(ctx context.Context) error {
	_ = s.Stop(ctx, 0)
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	delete(s.rt.sandboxes, s.cfg.ID)
	return nil
}

// harness runs a Provider over the fake runtime and records what it
// reports.
type harness struct {
	t       *testing.T
	rt      *fakeRuntime
	p       *Provider
	rec     *record.FakeRecorder
	objects *fakeObjects
	mu      sync.Mutex
	last    map[string]*corev1.Pod
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, rt: newFakeRuntime(), rec: record.NewFakeRecorder(1000), last: map[string]*corev1.Pod{},
		objects: &fakeObjects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}}
	p, err := New(Config{
		NodeName: "mac", NodeIP: "10.201.0.2", Root: t.TempDir(), Runtime: h.rt, Objects: h.objects, Recorder: h.rec,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods: resource.MustParse("10")},
		VMOverheadBytes: 64 << 20, BackoffInitial: 20 * time.Millisecond, BackoffMax: 160 * time.Millisecond,
		VolumeSyncPeriod: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	p.NotifyPods(context.Background(), func(pod *corev1.Pod) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.last[pod.Namespace+"/"+pod.Name] = pod
	})
	return h
}

func (h *harness) pod(name string) *corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last["ns/"+name]
}

// waitFor polls the last reported status until cond holds.
func (h *harness) waitFor(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p := h.pod(name); p != nil && cond(p) {
			return p
		}
		time.Sleep(5 * time.Millisecond)
	}
	p := h.pod(name)
	if p != nil {
		h.t.Fatalf("pod %s never %s; last status: phase=%s containers=%+v init=%+v", name, what, p.Status.Phase, p.Status.ContainerStatuses, p.Status.InitContainerStatuses)
	}
	h.t.Fatalf("pod %s never %s; no status reported", name, what)
	return nil
}

func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
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
