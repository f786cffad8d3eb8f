package agent_test

import (
	"testing"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
)

func TestInfoThroughWaitReady(t *testing.T) {
	e := newEnv(t)
	info, err := e.cl.WaitReady(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() != "test-version" || info.GetKernelRelease() == "" || info.GetAgentRssBytes() == 0 || info.GetUptimeNs() < info.GetReadyUptimeNs() {
		t.Fatalf("info = %+v", info)
	}
}

func TestExecOutputAndExitCode(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "echo")
	r := e.run(t, id, client.ExecOptions{Args: sh("echo out; echo err >&2; exit 3")})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.stdout != "out\n" || r.stderr != "err\n" || r.exit.GetExitCode() != 3 || r.exit.GetSignal() != 0 {
		t.Fatalf("got stdout %q stderr %q exit %+v", r.stdout, r.stderr, r.exit)
	}
	if r.exit.GetFinishedUnixNs() < r.exit.GetStartedUnixNs() || r.exit.GetStartedUnixNs() == 0 {
		t.Fatalf("bad times in %+v", r.exit)
	}
}

func TestExecNotFoundAndNotExecutable(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "notfound")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"no-such-command"}, 127},
		{[]string{"/bin/no-such-file"}, 127},
		{[]string{"not-runnable"}, 126}, // in PATH, mode 0644
		{[]string{"/usr/bin/not-runnable"}, 126},
		{[]string{"adir"}, 126}, // a directory in PATH (/bin/adir)
	} {
		r := e.run(t, id, client.ExecOptions{Args: tc.args})
		code, ok := client.ExitCode(r.err)
		if !ok || code != tc.code {
			t.Errorf("%v: err %v, exit code %d (mapped %v), want %d", tc.args, r.err, code, ok, tc.code)
		}
	}
}

func TestExecEnvCwdAndUser(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "user")
	r := e.run(t, id, client.ExecOptions{
		Args:           sh(`echo "$FOO|$HOME|$PATH"; pwd; id -u; id -g; id -G`),
		Env:            []string{"FOO=bar"},
		Cwd:            "/work/sub",
		UID:            1000,
		GID:            1000,
		AdditionalGIDs: []uint32{4000},
	})
	if r.err != nil || r.exit.GetExitCode() != 0 {
		t.Fatalf("err %v exit %+v stderr %q", r.err, r.exit, r.stderr)
	}
	want := "bar|/home/app|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/work/sub\n1000\n1000\n1000 2000 4000\n"
	if r.stdout != want {
		t.Fatalf("got\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestExecStdin(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "stdin")
	r := e.run(t, id, client.ExecOptions{Args: []string{"sh", "-c", "cat; echo done"}, Stdin: stringsReader("hello\nworld\n")})
	if r.err != nil || r.stdout != "hello\nworld\ndone\n" || r.exit.GetExitCode() != 0 {
		t.Fatalf("err %v stdout %q exit %+v", r.err, r.stdout, r.exit)
	}
}

func TestExecSignal(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "signal")
	ctx := ctxT(t)
	// The first process is PID 1 of the container, which the kernel
	// shields from signals it has no handler for (SIGTERM to `sleep`):
	// the one signalled is the second.
	for _, p := range []string{"first", "sleeper"} {
		if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: p, Args: []string{"sleep", "100"}}); err != nil {
			t.Fatal(err)
		}
		if p == "first" {
			if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: p}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Signal(ctx, &api.SignalRequest{ContainerId: id, ProcessId: "sleeper", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	if w.GetExit().GetSignal() != 15 || w.GetExit().GetExitCode() != 143 || w.GetExit().GetOomKilled() {
		t.Fatalf("exit = %+v", w.GetExit())
	}
	// Signalling an exited process is a no-op; deleting it works once.
	if _, err := e.cl.Signal(ctx, &api.SignalRequest{ContainerId: id, ProcessId: "sleeper", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.DeleteProcess(ctx, &api.DeleteProcessRequest{ContainerId: id, ProcessId: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "sleeper"}); err == nil {
		t.Fatal("wait for a deleted process succeeded")
	}
}
