package provider

import (
	"context"
	"errors"
	"github.com/vk-applevm/vk-applevm/container"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"
)

// logs reads a container's logs with opts.
func (h *harness) logs(pod, ctr string, opts api.ContainerLogOpts) string {
	h.t.Helper()
	rc, err := h.p.GetContainerLogs(context.Background(), "ns", pod, ctr, opts)
	return readAll(h.t, rc, err)
}

func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLogsCurrentAndPrevious(t *testing.T) {
	h := newHarness(t)
	h.create(testPod("logs", ctr("app", "log", "hello", "log", "world", "exit", "3")))
	h.waitFor("logs", "backing off", waiting("CrashLoopBackOff"))
	ctx := context.Background()
	if _, err := h.p.GetContainerLogs(ctx, "ns", "logs", "app", api.ContainerLogOpts{Previous: true}); !errdefs.IsInvalidInput(err) {
		t.Fatalf("previous before a restart: %v, want InvalidInput", err)
	}
	if got := h.logs("logs", "app", api.ContainerLogOpts{}); got != "hello\nworld\n" {
		t.Fatalf("logs %q", got)
	}
	if got := h.logs("logs", "app", api.ContainerLogOpts{Tail: 1}); got != "world\n" {
		t.Fatalf("tail 1: %q", got)
	}
	got := h.logs("logs", "app", api.ContainerLogOpts{Timestamps: true, Tail: 1})
	if !strings.HasPrefix(got, t0.Format("2006-01-02T15:04:05")) || !strings.HasSuffix(got, " world\n") {
		t.Fatalf("timestamps: %q", got)
	}
	h.stepUntil("logs", "restarted", time.Second, func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount == 1 })
	if got := h.logs("logs", "app", api.ContainerLogOpts{Previous: true}); got != "hello\nworld\n" {
		t.Fatalf("previous: %q", got)
	}
	if _, err := h.p.GetContainerLogs(ctx, "ns", "logs", "nosuch", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown container: %v", err)
	}
	if _, err := h.p.GetContainerLogs(ctx, "ns", "nosuch", "app", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown pod: %v", err)
	}
}

func TestLogsOfAContainerThatNeverStarted(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Image = "absent"
	h.create(testPod("nostart", c))
	h.waitFor("nostart", "ImagePullBackOff", waiting("ImagePullBackOff"))
	_, err := h.p.GetContainerLogs(context.Background(), "ns", "nostart", "app", api.ContainerLogOpts{})
	if !errdefs.IsInvalidInput(err) || !strings.Contains(err.Error(), "is waiting to start: ImagePullBackOff") {
		t.Fatalf("err = %v", err)
	}
}

func TestFollowEndsWithTheContainer(t *testing.T) {
	h := newHarness(t)
	pod := testPod("follow", ctr("app", "log", "before", "exit", "0", "30"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.create(pod)
	h.waitFor("follow", "running", running)
	// The shim creates the log as the first output arrives.
	h.eventually("the log written", func() bool {
		return h.logs("follow", "app", api.ContainerLogOpts{}) == "before\n"
	})
	rc, err := h.p.GetContainerLogs(context.Background(), "ns", "follow", "app", api.ContainerLogOpts{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(rc)
		done <- string(b)
	}()
	select {
	case got := <-done:
		t.Fatalf("follow ended while the container runs: %q", got)
	case <-time.After(10 * time.Millisecond):
	}
	h.clock.Step(30 * time.Second)
	select {
	case got := <-done:
		if got != "before\n" {
			t.Fatalf("followed %q", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("follow did not end when the container exited")
	}
}

// attachIO is a scripted api.AttachIO.
type attachIO struct {
	stdin          io.Reader
	stdout, stderr io.WriteCloser
	tty            bool
	resize         chan api.TermSize
}

func (a *attachIO) Stdin() io.Reader            { return a.stdin }
func (a *attachIO) Stdout() io.WriteCloser      { return a.stdout }
func (a *attachIO) Stderr() io.WriteCloser      { return a.stderr }
func (a *attachIO) TTY() bool                   { return a.tty }
func (a *attachIO) Resize() <-chan api.TermSize { return a.resize }

// withOut gives the attachment discarding stdout and stderr.
func (a *attachIO) withOut() *attachIO {
	a.stdout, a.stderr = nopCloser{}, nopCloser{}
	return a
}

type nopCloser struct{}

func (nopCloser) Close() error                { return nil }
func (nopCloser) Write(p []byte) (int, error) { return len(p), nil }

// exitCodeOf is the exit code an exec error carries for kubectl.
func exitCodeOf(err error) (int, bool) {
	var ee utilexec.CodeExitError
	ok := errors.As(err, &ee)
	return ee.Code, ok
}

// execIn runs cmd in a container of pod "exec".
func (h *harness) execIn(c string, cmd ...string) error {
	return h.p.RunInContainer(context.Background(), "ns", "exec", c, cmd, (&attachIO{}).withOut())
}

func TestExecExitCodesAndEnvironment(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
	c.WorkingDir = "/srv"
	h.create(testPod("exec", c))
	h.waitFor("exec", "running", running)
	if err := h.execIn("app", "true"); err != nil {
		t.Fatalf("exec true: %v", err)
	}
	if code, ok := exitCodeOf(h.execIn("app", "exit", "3")); !ok || code != 3 {
		t.Fatalf("exit 3: code %d (%v)", code, ok)
	}
	if code, ok := exitCodeOf(h.execIn("app", "notfound")); !ok || code != 127 {
		t.Fatalf("not found: code %d (%v)", code, ok)
	}
	// The default container is the first app container.
	if err := h.p.RunInContainer(context.Background(), "ns", "exec", "", []string{"true"}, (&attachIO{}).withOut()); err != nil {
		t.Fatalf("exec without a container name: %v", err)
	}
	vm := h.rt.vm("uid--exec", "app")
	vm.mu.Lock()
	var exec *fakeProc
	for id, p := range vm.procs {
		if strings.HasPrefix(id, "exec-") {
			exec = p
		}
	}
	vm.mu.Unlock()
	if exec == nil {
		t.Fatal("no exec process")
	}
	if err := h.execIn("nosuch", "true"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown container: %v", err)
	}
}

func TestExecAttachAndForwardNeedARunningContainer(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Image = "absent"
	h.create(testPod("exec", c))
	h.waitFor("exec", "waiting", waiting("ImagePullBackOff"))
	if err := h.execIn("app", "true"); !errdefs.IsInvalidInput(err) || !strings.Contains(err.Error(), "is not running") {
		t.Fatalf("exec: %v", err)
	}
	if err := h.p.AttachToContainer(context.Background(), "ns", "exec", "app", (&attachIO{}).withOut()); !errdefs.IsInvalidInput(err) {
		t.Fatalf("attach: %v", err)
	}
	if err := h.p.PortForward(context.Background(), "ns", "exec", 80, nil); !errdefs.IsInvalidInput(err) {
		t.Fatalf("port-forward: %v", err)
	}
}

func TestAttachAndPortForwardReachTheVM(t *testing.T) {
	h := newHarness(t)
	web := ctr("web", "run")
	web.Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	h.create(testPod("pf", ctr("side", "run"), web))
	h.waitFor("pf", "both running", func(p *corev1.Pod) bool {
		return running(p) && p.Status.ContainerStatuses[1].State.Running != nil
	})
	if err := h.p.AttachToContainer(context.Background(), "ns", "pf", "web", (&attachIO{tty: true, resize: make(chan api.TermSize)}).withOut()); err != nil {
		t.Fatalf("attach: %v", err)
	}
	// The fake VM cannot forward: the error shows the port's container was
	// reached (the declared port picks "web").
	if err := h.p.PortForward(context.Background(), "ns", "pf", 8080, nil); err == nil || !strings.Contains(err.Error(), "not in the fake") {
		t.Fatalf("port-forward: %v", err)
	}
	if err := h.p.PortForward(context.Background(), "ns", "pf", 70000, nil); !errdefs.IsInvalidInput(err) {
		t.Fatalf("invalid port: %v", err)
	}
	if err := h.p.PortForward(context.Background(), "ns", "gone", 80, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown pod: %v", err)
	}
}

func TestTermSizes(t *testing.T) {
	if termSizes(context.Background(), nil) != nil {
		t.Fatal("no resize channel, no sizes")
	}
	in := make(chan api.TermSize, 1)
	ctx, cancel := context.WithCancel(context.Background())
	out := termSizes(ctx, in)
	in <- api.TermSize{Width: 80, Height: 24}
	if s := <-out; s.Cols != 80 || s.Rows != 24 {
		t.Fatalf("%+v", s)
	}
	close(in)
	if _, ok := <-out; ok {
		t.Fatal("sizes continue after the input closed")
	}
	cancel()
}

// A TTY exec starts with the client's terminal size, which kubectl sends on
// the resize stream after the request; without one it starts anyway once
// the wait is over.
func TestTTYExecStartsWithTheClientsSize(t *testing.T) {
	h := newHarness(t)
	h.create(testPod("exec", ctr("app", "run")))
	h.waitFor("exec", "running", running)
	sized := &attachIO{tty: true, resize: make(chan api.TermSize, 1)}
	sized.withOut()
	sized.resize <- api.TermSize{Width: 88, Height: 24}
	if err := h.p.RunInContainer(context.Background(), "ns", "exec", "app", []string{"true"}, sized); err != nil {
		t.Fatal(err)
	}
	execSizes := func() []container.TermSize {
		vm := h.rt.vm("uid--exec", "app")
		vm.mu.Lock()
		defer vm.mu.Unlock()
		var out []container.TermSize
		for id, p := range vm.procs {
			if strings.HasPrefix(id, "exec-") {
				out = append(out, p.size)
			}
		}
		return out
	}
	if got := execSizes(); len(got) != 1 || got[0] != (container.TermSize{Rows: 24, Cols: 88}) {
		t.Fatalf("initial sizes %v, want 24×88", got)
	}
	silent := &attachIO{tty: true, resize: make(chan api.TermSize)}
	silent.withOut()
	done := make(chan error, 1)
	go func() {
		done <- h.p.RunInContainer(context.Background(), "ns", "exec", "app", []string{"true"}, silent)
	}()
	for deadline := time.Now().Add(waitTimeout); ; {
		h.clock.Step(initialSizeWait)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if got := execSizes(); len(got) != 2 {
				t.Fatalf("exec processes %v", got)
			}
			return
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a TTY exec without a size never started")
		}
	}
}
