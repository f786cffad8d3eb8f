package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/sockpath"
)

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// agentCommand sends one command line on a new agent connection and
// returns the first reply line.
func agentCommand(t *testing.T, c *Client, cmd string) string {
	t.Helper()
	conn, err := c.DialAgent(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(conn, cmd); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reply to %q: %v", cmd, err)
	}
	return strings.TrimSpace(line)
}

// echoThrough sends payload through an "echo" stream, half-closes and
// returns what came back.
func echoThrough(conn net.Conn, payload []byte) ([]byte, error) {
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(append([]byte("echo\n"), payload...))
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(conn)
	if werr := <-errc; werr != nil {
		return got, werr
	}
	return got, err
}

func TestLaunchStateAndGracefulStop(t *testing.T) {
	v := launchFake(t, nil)
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusRunning || st.ID != "0123456789ab" || st.Driver != "fake" || st.StartedAt.IsZero() {
		t.Fatalf("state after launch: %+v", st)
	}
	if !isProcess(st.ShimPid, st.ShimStartTime) || !isProcess(st.HypervisorPid, st.HypervisorStartTime) {
		t.Fatalf("shim or hypervisor not alive with the recorded start time: %+v", st)
	}
	onDisk, err := readState(v.dir)
	if err != nil || onDisk.Status != StatusRunning || onDisk.HypervisorPid != st.HypervisorPid {
		t.Fatalf("state.json = %+v, %v; want it to match %+v", onDisk, err, st)
	}
	if got := agentCommand(t, v.Client, "session"); len(strings.Fields(got)) != 2 {
		t.Fatalf("session reply %q", got)
	}
	// Output written just before the stop, without a newline, must reach
	// the disk when the machine stops.
	if err := v.RegisterLog(ctxFor(t, 5*time.Second), "main"); err != nil {
		t.Fatal(err)
	}
	if got := agentCommand(t, v.Client, "log main stdout "+hex.EncodeToString([]byte("last words"))); got != "ok" {
		t.Fatalf("log reply %q", got)
	}

	stopBegin := time.Now()
	if err := v.Stop(ctxFor(t, 20*time.Second), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	final, err := v.Wait(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != StatusStopped || final.Error != "" || final.StoppedAt.Before(final.StartedAt) {
		t.Fatalf("final state %+v, want stopped by the guest without error", final)
	}
	if final.StoppedAt.Sub(stopBegin) > 8*time.Second {
		t.Errorf("graceful stop took until the kill deadline: %+v", final)
	}
	// 10 s of grace leave the guest 8 s (guestGrace keeps 2 s to power off).
	waitShimLog(t, v.dir, "fake agent: Shutdown grace=8s")
	waitShimLog(t, v.dir, "guest agent is shutting down")
	eventually(t, 10*time.Second, "shim exits after the machine stopped", func() bool {
		return !isProcess(st.ShimPid, st.ShimStartTime)
	})
	if isProcess(st.HypervisorPid, st.HypervisorStartTime) {
		t.Error("hypervisor still alive after stop")
	}
	for _, sock := range []string{apiSocket, agentSock} {
		if fileExists(filepath.Join(v.dir, sock)) {
			t.Errorf("%s left behind", sock)
		}
	}
	// A stopped machine answers from disk.
	c, err := Connect(v.dir)
	if err != nil {
		t.Fatalf("Connect to stopped machine: %v", err)
	}
	if st, err := c.State(ctxFor(t, 5*time.Second)); err != nil || st.Status != StatusStopped {
		t.Fatalf("State of stopped machine = %+v, %v", st, err)
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir still there after Delete: %v", err)
	}
	if got := readLog(t, v.logDir, "main"); got != "last words\n" && got != "last words" {
		t.Fatalf("main.log after Delete reads %q, want the last words", got)
	}
}

func TestConcurrentAgentConnections(t *testing.T) {
	v := launchFake(t, nil)
	const conns = 2
	payloads := make([][]byte, conns)
	for i := range payloads {
		// Larger than a yamux window, so both streams are in flight at once.
		payloads[i] = bytes.Repeat([]byte(fmt.Sprintf("stream %d;", i)), 200_000)
	}
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for i := range conns {
		conn, err := v.DialAgent(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := echoThrough(conn, payloads[i])
			if err == nil && !bytes.Equal(got, payloads[i]) {
				err = fmt.Errorf("connection %d: echoed %d bytes, sent %d (or content differs)", i, len(got), len(payloads[i]))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// What the guest sent on an agent stream just before the machine stopped
// reaches the client, however slowly it reads, before its connection ends:
// an attach gets a process's last output and exit status when the guest
// powers off right after.
func TestStreamOutputSurvivesMachineStop(t *testing.T) {
	v := launchFake(t, nil)
	conn, err := v.DialAgent(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// More than the socket buffers hold, less than a yamux window: the
	// rest waits in the shim while the machine stops.
	const n = 768 << 10
	if _, err := fmt.Fprintf(conn, "farewell %d\n", n); err != nil {
		t.Fatal(err)
	}
	got := 0
	buf := make([]byte, 16<<10)
	for {
		k, err := conn.Read(buf)
		got += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		time.Sleep(time.Millisecond) // a client slower than the shim
	}
	if got != n {
		t.Fatalf("read %d bytes, the guest sent %d", got, n)
	}
	if _, err := v.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// A node process launches the shim and exits; a later process re-attaches
// and reaches the same guest session.
func TestReattachFromAnotherProcess(t *testing.T) {
	root := shortTempDir(t)
	dir := filepath.Join(root, "vm")
	exe, _ := os.Executable()
	node := exec.Command(exe)
	node.Env = append(os.Environ(), envLaunchDir+"="+dir, envLaunchLog+"="+filepath.Join(root, "logs"))
	if out, err := node.CombinedOutput(); err != nil {
		t.Fatalf("launching node process: %v\n%s", err, out)
	}
	t.Cleanup(func() { deleteQuietly(t, dir) })

	c1, err := Connect(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Fields(agentCommand(t, c1, "session"))
	c2, err := Connect(dir) // the "restarted" node
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c2.DialAgent(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := echoThrough(conn, []byte("after restart"))
	conn.Close()
	if err != nil || string(got) != "after restart" {
		t.Fatalf("echo after re-attach = %q, %v", got, err)
	}
	second := strings.Fields(agentCommand(t, c2, "session"))
	if len(first) != 2 || len(second) != 2 || first[0] != second[0] || second[1] != "3" {
		t.Fatalf("guest session before %v, after %v: want the same session, 3 streams seen", first, second)
	}
	if st, err := c2.State(ctxFor(t, 5*time.Second)); err != nil || st.Status != StatusRunning {
		t.Fatalf("State after re-attach = %+v, %v", st, err)
	}
}

func TestShimKilledTakesMachineDown(t *testing.T) {
	v := launchFake(t, nil)
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.ShimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "hypervisor dies with its shim (PDEATHSIG)", func() bool {
		return !isProcess(st.HypervisorPid, st.HypervisorStartTime)
	})
	// PDEATHSIG fires when the shim thread that forked the hypervisor exits,
	// which can be before the whole shim has; until then Connect rightly
	// sees a live shim.
	eventually(t, 10*time.Second, "shim gone", func() bool {
		return !isProcess(st.ShimPid, st.ShimStartTime)
	})
	c, err := Connect(v.dir)
	if !errors.Is(err, ErrShimDead) || c == nil {
		t.Fatalf("Connect after SIGKILL = %v, %v; want a client and ErrShimDead", c, err)
	}
	if _, err := c.State(ctxFor(t, 5*time.Second)); !errors.Is(err, ErrShimDead) {
		t.Fatalf("State after SIGKILL: %v, want ErrShimDead", err)
	}
	if _, err := c.DialAgent(ctxFor(t, 5*time.Second)); err == nil {
		t.Fatal("DialAgent succeeded with a dead shim")
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir still there: %v", err)
	}
}

func TestDeleteKillsLeftoverHypervisor(t *testing.T) {
	v := launchFake(t, nil, envNoPdeathsig+"=1")
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.ShimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "shim gone", func() bool { return !isProcess(st.ShimPid, st.ShimStartTime) })
	if !isProcess(st.HypervisorPid, st.HypervisorStartTime) {
		t.Fatal("stand-in without PDEATHSIG died with the shim; the test cannot check Delete")
	}
	c, err := Connect(v.dir)
	if !errors.Is(err, ErrShimDead) {
		t.Fatalf("Connect = %v, want ErrShimDead", err)
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if isProcess(st.HypervisorPid, st.HypervisorStartTime) {
		t.Fatal("Delete left the hypervisor running")
	}
}

// Delete must not kill a process that merely reuses a recorded pid.
func TestDeleteSparesReusedPid(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "vm")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bystander := exec.Command("sleep", "30")
	if err := bystander.Start(); err != nil {
		t.Fatalf("start sleep (coreutils): %v", err)
	}
	t.Cleanup(func() { _ = bystander.Process.Kill(); _ = bystander.Wait() })
	start, err := processStartTime(bystander.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	err = writeState(dir, State{
		ID: "x", Status: StatusRunning,
		ShimPid: bystander.Process.Pid, ShimStartTime: start + 1,
		HypervisorPid: bystander.Process.Pid, HypervisorStartTime: start + 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(dir)
	if !errors.Is(err, ErrShimDead) {
		t.Fatalf("Connect = %v, want ErrShimDead (the pid is someone else's)", err)
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !isProcess(bystander.Process.Pid, start) {
		t.Fatal("Delete killed a process that only reused the recorded pid")
	}
}

func TestLaunchFailureShowsLogs(t *testing.T) {
	root := shortTempDir(t)
	dir := filepath.Join(root, "vm")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir, "")
	if err := os.WriteFile(cfg.Spec.ConsoleLog, []byte("Kernel panic - not syncing: test console line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Launch(ctxFor(t, 30*time.Second), dir, cfg, testShimArgv(dir, envStartFail+"=no hypervisor here")...)
	if err == nil {
		t.Fatal("Launch succeeded with a failing driver")
	}
	for _, want := range []string{"no hypervisor here", "fake driver: refusing to start", "test console line"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Launch error lacks %q:\n%v", want, err)
		}
	}
	st, serr := readState(dir)
	if serr != nil || st.Status != StatusStopped || !strings.Contains(st.Error, "no hypervisor here") {
		t.Fatalf("state after failed start = %+v, %v", st, serr)
	}
	if _, err := Launch(ctxFor(t, 5*time.Second), dir, cfg, testShimArgv(dir)...); !errors.Is(err, ErrExists) {
		t.Fatalf("second Launch into a used dir: %v, want ErrExists", err)
	}
	c, err := Connect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestLaunchRejectsBadConfig(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "vm")
	cfg := testConfig(dir, "relative/logs")
	if _, err := Launch(ctxFor(t, 5*time.Second), dir, cfg); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("Launch with relative log dir: %v", err)
	}
	long := "/tmp/" + strings.Repeat("d", 100)
	if _, err := Launch(ctxFor(t, 5*time.Second), long, testConfig(long, "")); !errors.Is(err, sockpath.ErrTooLong) {
		t.Fatalf("Launch with a long dir: %v", err)
	}
}

func TestList(t *testing.T) {
	root := shortTempDir(t)
	for _, name := range []string{"b", "a"} {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := saveConfig(dir, testConfig(dir, "")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "not-a-vm"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := List(root)
	want := []string{filepath.Join(root, "a"), filepath.Join(root, "b")}
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("List = %v, %v; want %v", got, err, want)
	}
	if got, err := List(filepath.Join(root, "missing")); err != nil || len(got) != 0 {
		t.Fatalf("List of a missing root = %v, %v", got, err)
	}
}

// A Launch whose context ends while the machine is starting stops the shim
// it started.
func TestLaunchCancelledStopsShim(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "vm")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Launch(ctx, dir, testConfig(dir, ""), testShimArgv(dir, envStartDelay+"=30s")...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Launch = %v, want the context's deadline", err)
	}
	st, err := readState(dir)
	if err != nil || st.Status != StatusStarting {
		t.Fatalf("state = %+v, %v; want the shim's starting state", st, err)
	}
	eventually(t, 5*time.Second, "shim killed", func() bool { return !isProcess(st.ShimPid, st.ShimStartTime) })
	c, err := Connect(dir)
	if !errors.Is(err, ErrShimDead) {
		t.Fatalf("Connect = %v, want ErrShimDead", err)
	}
	if err := c.Delete(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}
