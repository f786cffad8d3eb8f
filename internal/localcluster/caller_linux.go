package localcluster

import (
	"os/exec"
	"runtime"
	"syscall"
)

// dieWithCaller makes cmd's process get SIGKILL when this process ends,
// however it ends (a test binary killed at its -timeout, Ctrl-C): a
// short-lived command (kubectl, the cluster tool) then does not outlive
// its caller. The kernel sends the signal when the thread that forked the
// child ends; Go ends threads only when a goroutine exits locked to one, so
// for a command that runs for long use startOnOwnThread.
func dieWithCaller(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// startOnOwnThread starts cmd with dieWithCaller from a thread kept for it
// until it exits, and reaps it then: no other code runs on that thread, so
// it cannot end (golang/go#27505) and deliver the signal early.
func startOnOwnThread(cmd *exec.Cmd) error {
	dieWithCaller(cmd)
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// child has.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	return <-started
}
