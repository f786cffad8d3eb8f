package container_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/crilog"
	"github.com/vk-applevm/vk-applevm/internal/syncbuf"
)

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintln(&b, i)
	}
	return b.String()
}

// gatedWriter holds every write until open is closed: a client that reads
// slower than the process writes (kubectl behind the API server), so the
// output is still on its way when the process has exited.
type gatedWriter struct {
	open <-chan struct{}
	w    *syncbuf.Buffer
}

func (g gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	return g.w.Write(p)
}

// TestDeleteAtExitKeepsAttachedOutput is `kubectl attach` to a pod's
// process that answers and exits, with the node doing what it does for a
// pod that has ended: as soon as Wait reports the exit, the VM is deleted.
// The attached client still gets every byte and the exit status, and the
// log holds every byte, the unterminated last line too, by the time Wait
// returns.
func TestDeleteAtExitKeepsAttachedOutput(t *testing.T) {
	rt := newRuntime(t)
	logDir := t.TempDir()
	sb := createVM(t, rt, logDir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// About 70 KiB: more than gRPC's initial stream window, so the agent
	// still has output to send when the process exits, and less than what
	// the pipe and the agent's queues hold, so the process can exit while
	// the client does not read.
	const lines = 14000
	proc := container.ProcessConfig{
		ID: "main-0", LogName: "0", Stdin: true,
		Args: []string{"sh", "-c", fmt.Sprintf(`read line; echo "got $line"; seq 1 %d; printf last; exit 4`, lines)},
	}
	if _, err := sb.Start(ctx, proc); err != nil {
		t.Fatal(err)
	}
	type attached struct {
		st  container.ExitStatus
		err error
	}
	out, errOut := new(syncbuf.Buffer), new(syncbuf.Buffer)
	open := make(chan struct{})
	done := make(chan attached, 1)
	go func() {
		st, err := sb.AttachWait(ctx, proc.ID, container.IO{
			Stdin: strings.NewReader("hello\n"), Stdout: gatedWriter{open, out}, Stderr: gatedWriter{open, errOut}})
		done <- attached{st, err}
	}()
	st, err := sb.Wait(ctx, proc.ID)
	close(open)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 4 {
		t.Errorf("Wait: exit code %d, want 4", st.Code)
	}
	want := "got hello\n" + seqOutput(lines) + "last"
	// Wait returned: the log must be complete already (kubectl logs -f
	// ends when the provider has seen the exit). The shim ends an
	// unterminated last line when the output ends, as containerd does.
	var logged bytes.Buffer
	if err := crilog.Read(ctx, logDir, "0", &logged, crilog.Options{Tail: -1}); err != nil {
		t.Errorf("read the log: %v", err)
	} else if logged.String() != want+"\n" {
		t.Errorf("the log holds %d bytes when Wait returns, want %d; it ends %q", logged.Len(), len(want)+1, tail(logged.String()))
	}
	// Too late to attach: the output is in the log (kubectl falls back to
	// it).
	if _, err := sb.AttachWait(ctx, proc.ID, container.IO{Stdout: new(syncbuf.Buffer)}); !errors.Is(err, container.ErrExited) {
		t.Errorf("attach after the exit: %v, want ErrExited", err)
	}
	// What the provider does for a pod whose containers have all ended.
	if err := sb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil {
		t.Fatalf("attach: %v (after %d bytes of output)", a.err, len(out.String()))
	}
	if a.st.Code != 4 {
		t.Errorf("attach: exit code %d, want 4", a.st.Code)
	}
	if got := out.String(); got != want {
		t.Errorf("attach: %d bytes of output, want %d; it ends %q", len(got), len(want), tail(got))
	}
	if errOut.String() != "" {
		t.Errorf("attach: stderr %q", errOut.String())
	}
}

// TestDeleteEndsExecWithItsExitStatus deletes a sandbox while an exec
// streams output: the exec ends with the kill's exit status after the
// output it had, not with a cut connection.
func TestDeleteEndsExecWithItsExitStatus(t *testing.T) {
	rt := newRuntime(t)
	sb := createVM(t, rt, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, done := startStubbornExec(t, ctx, sb)
	begin := time.Now()
	if err := sb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Delete took %v", time.Since(begin).Round(time.Millisecond))
	r := <-done
	if r.err != nil {
		t.Fatalf("exec: %v", r.err)
	}
	if r.st.Code != 137 || r.st.Signal != 9 {
		t.Errorf("exec: exit %+v, want SIGKILL (137)", r.st)
	}
	if out.String() != "started\n" {
		t.Errorf("exec output %q", out.String())
	}
}

type execResult struct {
	st  container.ExitStatus
	err error
}

// startStubbornExec runs an exec that ignores SIGTERM (`trap ” TERM`: only
// a kill ends it) and returns once it has said "started".
func startStubbornExec(t *testing.T, ctx context.Context, sb *container.VM) (*syncbuf.Buffer, <-chan execResult) {
	t.Helper()
	out := new(syncbuf.Buffer)
	done := make(chan execResult, 1)
	go func() {
		st, err := sb.Exec(ctx, container.ProcessConfig{ID: "exec-1", Args: []string{"sh", "-c", "trap '' TERM; echo started; while true; do sleep 1; done"}},
			container.IO{Stdout: out, Stderr: out})
		done <- execResult{st, err}
	}()
	for !strings.Contains(out.String(), "started") {
		select {
		case r := <-done:
			t.Fatalf("exec ended early: %+v %v, output %q", r.st, r.err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return out, done
}

func tail(s string) string {
	if len(s) > 40 {
		return s[len(s)-40:]
	}
	return s
}

// TestStopDeliversStreamsAndLogs stops a sandbox gracefully while an exec
// that ignores SIGTERM streams: the exec ends with the kill's exit status
// after its output, and the main process's log, its goodbye included, is
// on disk when Stop returns.
func TestStopDeliversStreamsAndLogs(t *testing.T) {
	rt := newRuntime(t)
	logDir := t.TempDir()
	sb := createVM(t, rt, logDir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := sb.Start(ctx, container.ProcessConfig{ID: "main-0", LogName: "0",
		Args: []string{"sh", "-c", "trap 'printf bye; exit 0' TERM; echo up; while true; do sleep 1; done"}}); err != nil {
		t.Fatal(err)
	}
	// "up" follows the trap. Before it, SIGTERM would find a PID 1 with no
	// handler, which the kernel shields: no goodbye, a kill at the end of
	// the grace period. Start returns when the process runs, not when its
	// shell has read the trap.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var logged bytes.Buffer
		if err := crilog.Read(ctx, logDir, "0", &logged, crilog.Options{Tail: -1}); err == nil && strings.HasPrefix(logged.String(), "up\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the main process did not say up within a minute: %q", logged.String())
		}
	}
	out, done := startStubbornExec(t, ctx, sb)
	if err := sb.Stop(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	// The goodbye has no newline: the end of the log completes it. (sh
	// may report its sleep "Terminated" in between.)
	var logged bytes.Buffer
	if err := crilog.Read(ctx, logDir, "0", &logged, crilog.Options{Tail: -1}); err != nil ||
		!strings.HasPrefix(logged.String(), "up\n") || !strings.HasSuffix(logged.String(), "\nbye\n") {
		t.Errorf("the main process's log when Stop returns: %q %v, want up, then bye as a whole line", logged.String(), err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("exec: %v", r.err)
	}
	if r.st.Signal != 9 || out.String() != "started\n" {
		t.Errorf("exec: exit %+v, output %q; want killed by SIGKILL after %q", r.st, out.String(), "started\n")
	}
}
