package agent_test

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// gatedWriter holds every write until open: a host that has not read the
// log port for a while.
type gatedWriter struct {
	w    io.Writer
	open chan struct{}
	once sync.Once
}

func (g *gatedWriter) Write(b []byte) (int, error) {
	<-g.open
	return g.w.Write(b)
}

func (g *gatedWriter) release() { g.once.Do(func() { close(g.open) }) }

// The container's init exits with output still in its pipe and in the log
// queue, behind a host that reads the log port only long after the drain
// timeout: nothing else can hold the init's pipes (its exit killed the
// container), so the log must end after every byte, not when a timer says.
func TestInitLogEndsAfterItsLastOutputHoweverLateTheHostReads(t *testing.T) {
	testLogEndsAfterLastOutput(t, false)
}

// Another process of the container (an exec) may leave a child holding its
// pipes, which the drain timeout is for; but what the process itself wrote
// before it exited is all in its pipes then, and must all be logged
// however late the host reads.
func TestExecLogEndsAfterItsOwnLastOutputHoweverLateTheHostReads(t *testing.T) {
	testLogEndsAfterLastOutput(t, true)
}

func testLogEndsAfterLastOutput(t *testing.T, exec bool) {
	var gate *gatedWriter
	e := newEnv(t, func(c *agent.Config) {
		gate = &gatedWriter{w: c.LogSink, open: make(chan struct{})}
		c.LogSink = gate
		c.LogQueueBytes = 1 // one frame queued; the pipe holds the rest
		c.DrainTimeout = time.Millisecond
	})
	t.Cleanup(gate.release) // before the server closes (cleanups run last first)
	id := e.createContainer(t, "late")
	ctx := ctxT(t)
	if exec {
		if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "init", Args: []string{"sleep", "1000"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "init"}); err != nil {
			t.Fatal(err)
		}
	}
	// One byte, taken by the log writer that then blocks on the port; the
	// rest, 4 KiB writes: one chunk queued, one held by the pipe reader
	// waiting for room, at least 4 KiB left in the pipe (64 KiB), which
	// holds it all, so the process exits with its output not yet logged.
	// The pause only makes the first read hold the single byte.
	const rest = 64<<10 + 4<<10
	script := "printf x; sleep 0.2; head -c 69632 /dev/zero"
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "p", LogName: "0", Args: sh(script)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "p"}); err != nil {
		t.Fatal(err)
	}
	if w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "p"}); err != nil || w.GetExit().GetExitCode() != 0 {
		t.Fatalf("wait: %+v %v", w, err)
	}
	// Far past the drain timeout: a timer that could end the log has fired
	// by now. (This wait only gives the old behaviour its chance to fail.)
	time.Sleep(100 * time.Millisecond)
	gate.release()
	n := 0
	for f := range e.logFrames() {
		if f.Stream == logframe.End {
			break
		}
		n += len(f.Data)
	}
	if n != 1+rest {
		t.Fatalf("the log ended after %d bytes of the process's %d", n, 1+rest)
	}
}

// A child that outlives an exec and keeps writing to its pipes must not
// keep the exec from ending: after the exec's own output, the drain
// timeout ends it.
func TestExecEndsThoughAChildKeepsWritingToItsPipes(t *testing.T) {
	e := newEnv(t, func(c *agent.Config) { c.DrainTimeout = 50 * time.Millisecond })
	id := e.createContainer(t, "survivor")
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "init", Args: []string{"sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "init"}); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, id, client.ExecOptions{Args: sh("(while :; do echo tick; sleep 0.01; done) & echo parent-done")})
	if r.err != nil || r.exit.GetExitCode() != 0 || !strings.Contains(r.stdout, "parent-done\n") {
		t.Fatalf("exec with a writing child: err %v exit %+v stdout %q", r.err, r.exit, r.stdout)
	}
}
