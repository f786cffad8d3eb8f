package localcluster

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Stop returns only once the process has ended, whatever the grace: the
// e2e tests start a node's successor right after killing it, and the
// successor needs what the killed one held.
func TestStopReturnsOnceTheProcessHasEnded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		grace time.Duration
	}{
		{"SIGKILL, no grace", syscall.SIGKILL, 0},
		{"ignored SIGTERM, then the kill", syscall.SIGTERM, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", "trap '' TERM; while :; do sleep 1; done")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go cmd.Wait()
			p := &Process{Cmd: cmd}
			p.Stop(tc.sig, tc.grace)
			if err := cmd.Process.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
				t.Fatalf("after Stop the process is still there: signal 0: %v", err)
			}
		})
	}
}
