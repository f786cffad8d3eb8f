package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/vk-applevm/vk-applevm/e2e/internal/leftovers"
)

// What the suite starts must end with it, also when the test binary dies
// without its teardown (go test's -timeout, Ctrl-C, a kill):
//   - commands it runs get SIGKILL when it ends (diesWithTest), the node
//     too (localcluster's StartOwned);
//   - what outlives a command by design (control-plane components, shims,
//     QEMU, the switch) runs in the run's network namespaces, which a
//     reaper process empties and deletes once the test binary is gone;
//   - leftovers of earlier runs that died before the reaper existed, or
//     with it, are removed when the next run starts (leftovers.RemoveStale).

// diesWithTest makes cmd get SIGKILL when the test binary ends. The signal
// follows the thread that forked the child; the Go runtime ends a thread
// only when a goroutine exits locked to it, which nothing here does while
// a command runs (the node, which lives long, is started on a thread of
// its own anyway).
func diesWithTest(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd
}

// reaperRole is the first argument that makes the test binary the reaper.
const reaperRole = "vkav-e2e-reaper"

// reaperDone is what the teardown writes to the reaper: the run cleaned up
// after itself.
const reaperDone = "done"

// startReaper starts the reaper of this run: a copy of the test binary, in
// a session of its own (Ctrl-C does not reach it), reading a pipe that
// only this process can write to. When the pipe closes without
// reaperDone, this process died and the reaper removes what it left. It
// writes to this process's stderr, so go test waits for it and reports
// what it did. The returned function tells it the run is clean.
func startReaper() (func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(exe, reaperRole, strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the reaper: %w", err)
	}
	go cmd.Wait()
	return func() {
		_, _ = io.WriteString(w, reaperDone)
		w.Close()
	}, nil
}

// runReaper waits for the test binary pid to close the pipe on stdin.
func runReaper(pid int) int {
	// Its stderr is go test's pipe: when go test was killed too, a write
	// to it must fail, not kill the reaper with SIGPIPE before it cleaned
	// up (seen: SIGTERM to make and e2e.test left etcd, kube-apiserver
	// and both namespaces).
	signal.Ignore(syscall.SIGPIPE)
	b, _ := io.ReadAll(os.Stdin)
	if string(b) == reaperDone {
		return 0
	}
	fmt.Fprintf(os.Stderr, "e2e reaper: the test binary (pid %d) ended before its teardown; removing its namespaces, the processes in them and its files\n", pid)
	if err := leftovers.Remove(pid); err != nil {
		fmt.Fprintln(os.Stderr, "e2e reaper:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "e2e reaper: done")
	return 0
}
