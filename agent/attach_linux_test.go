package agent_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/syncbuf"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// syncBuffer is safe for a writer and a poller.
type syncBuffer = syncbuf.Buffer

// waitFor polls until cond holds or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecTerminalWithResize(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "tty")
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	resize := make(chan client.TermSize, 1)
	out := &syncBuffer{}
	done := make(chan result, 1)
	go func() {
		done <- e.run(t, id, client.ExecOptions{
			Args:        sh("tty; stty size; read x; stty size; exit 7"),
			TTY:         true,
			InitialSize: client.TermSize{Rows: 24, Cols: 80},
			Resize:      resize,
			Stdin:       stdinR,
			Stdout:      out,
		})
	}()
	waitFor(t, "initial size", func() bool { return strings.Contains(out.String(), "24 80") })
	resize <- client.TermSize{Rows: 40, Cols: 100}
	// Resize and stdin travel in order on the attach stream.
	time.Sleep(50 * time.Millisecond)
	if _, err := stdinW.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := out.String()
	// The terminal is the container's own devpts instance; onlcr turns
	// newlines into CRLF.
	if !strings.Contains(got, "/dev/pts/0\r\n") || !strings.Contains(got, "40 100\r\n") || r.exit.GetExitCode() != 7 {
		t.Fatalf("output %q exit %+v", got, r.exit)
	}
}

// attachStream opens an Attach call and waits for its confirmation.
func attachStream(t *testing.T, e *env, id, pid string, stdout, stderr bool) grpc.BidiStreamingClient[api.AttachRequest, api.AttachResponse] {
	t.Helper()
	st, err := e.cl.Attach(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.AttachRequest{ContainerId: id, ProcessId: pid, WantStdout: stdout, WantStderr: stderr}); err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.GetData()) != 0 || m.GetExit() != nil {
		t.Fatalf("first attach response is not a bare confirmation: %+v", m)
	}
	return st
}

// collect reads an attach stream to its exit status.
func collect(t *testing.T, st grpc.BidiStreamingClient[api.AttachRequest, api.AttachResponse]) (stdout, stderr string, exit *api.ExitStatus) {
	t.Helper()
	var o, e strings.Builder
	for {
		m, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatal("attach stream ended without an exit status")
			}
			t.Fatal(err)
		}
		if m.GetExit() != nil {
			return o.String(), e.String(), m.GetExit()
		}
		switch m.GetStream() {
		case api.AttachResponse_STDOUT:
			o.Write(m.GetData())
		case api.AttachResponse_STDERR:
			e.Write(m.GetData())
		}
	}
}

func TestMultipleAttachers(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "attachers")
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "p", Args: sh("read x; echo got $x; echo bye >&2"), Stdin: true}); err != nil {
		t.Fatal(err)
	}
	a1 := attachStream(t, e, id, "p", true, true)
	a2 := attachStream(t, e, id, "p", true, false)
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Send(&api.AttachRequest{Stdin: []byte("hi\n")}); err != nil {
		t.Fatal(err)
	}
	type got struct{ out, err string }
	results := make(chan got, 2)
	for _, a := range []grpc.BidiStreamingClient[api.AttachRequest, api.AttachResponse]{a1, a2} {
		go func() {
			o, e, st := collect(t, a)
			if st.GetExitCode() != 0 {
				t.Errorf("exit %+v", st)
			}
			results <- got{o, e}
		}()
	}
	r1, r2 := <-results, <-results
	all := []got{r1, r2}
	var both, outOnly bool
	for _, r := range all {
		both = both || (r.out == "got hi\n" && r.err == "bye\n")
		outOnly = outOnly || (r.out == "got hi\n" && r.err == "")
	}
	if !both || !outOnly {
		t.Fatalf("attachers got %+v", all)
	}
}

func TestOutputBeforeAttachIsBuffered(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "early")
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "p", Args: sh("echo early; echo late >&2; exit 4")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "p"}); err != nil {
		t.Fatal(err)
	}
	a := attachStream(t, e, id, "p", true, true)
	o, er, st := collect(t, a)
	if o != "early\n" || er != "late\n" || st.GetExitCode() != 4 {
		t.Fatalf("stdout %q stderr %q exit %+v", o, er, st)
	}
}

// A logged process that exited before anyone attached gives its first
// attacher its output; attaching again fails (the client reads the log
// instead) rather than returning an exit status without the output.
func TestAttachToExitedLoggedProcess(t *testing.T) {
	e := newEnv(t)
	frames := e.logFrames()
	id := e.createContainer(t, "exited")
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "p", LogName: "0", Args: sh("echo last; exit 3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "p"}); err != nil {
		t.Fatal(err)
	}
	w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "p"})
	if err != nil || w.GetExit().GetExitCode() != 3 || w.GetLogName() != "0" {
		t.Fatalf("wait: %+v %v", w, err)
	}
	if o, er, ex := collect(t, attachStream(t, e, id, "p", true, true)); o != "last\n" || er != "" || ex.GetExitCode() != 3 {
		t.Fatalf("first attach after the exit: stdout %q stderr %q exit %+v", o, er, ex)
	}
	st, err := e.cl.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.AttachRequest{ContainerId: id, ProcessId: "p", WantStdout: true, WantStderr: true}); err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second attach after the exit: %+v %v, want FailedPrecondition", m, err)
	}
	for f := range frames {
		if f.Stream == logframe.End {
			return
		}
		if string(f.Data) != "last\n" {
			t.Fatalf("log frame %+v", f)
		}
	}
}

func TestResizeAndCloseStdinRPCs(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "rpcs")
	ctx := ctxT(t)
	// A terminal process resized through the RPC before it reads its size.
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "tty", Args: sh("read x; stty size"), Terminal: true, Stdin: true, Rows: 10, Cols: 20}); err != nil {
		t.Fatal(err)
	}
	a := attachStream(t, e, id, "tty", true, false)
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "tty"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.ResizeTTY(ctx, &api.ResizeTTYRequest{ContainerId: id, ProcessId: "tty", Rows: 30, Cols: 90}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(&api.AttachRequest{Stdin: []byte("\n")}); err != nil {
		t.Fatal(err)
	}
	out, _, st := collect(t, a)
	if !strings.Contains(out, "30 90\r\n") || st.GetExitCode() != 0 {
		t.Fatalf("output %q exit %+v", out, st)
	}
	// A pipe process ends when its stdin is closed through the RPC.
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "cat", Args: []string{"cat"}, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "cat"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.ResizeTTY(ctx, &api.ResizeTTYRequest{ContainerId: id, ProcessId: "cat", Rows: 1, Cols: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("resize without a terminal: %v", err)
	}
	if _, err := e.cl.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: id, ProcessId: "cat"}); err != nil {
		t.Fatal(err)
	}
	w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "cat"})
	if err != nil || w.GetExit().GetExitCode() != 0 {
		t.Fatalf("cat after CloseStdin: %v %+v", err, w.GetExit())
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "cat"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second start: %v", err)
	}
}
