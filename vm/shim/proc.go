package shim

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// errProcessGone reports a pid that no longer names a live process (absent
// or a zombie).
var errProcessGone = errors.New("process is gone")

// isProcess reports whether pid still names the process that started at
// start; a reused pid has another start time.
func isProcess(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, err := processStartTime(pid)
	return err == nil && got == start
}

// killProcess sends SIGKILL to pid if it is still the process that started
// at start, and waits until it is gone (or not ours any more) or the wait
// bound passes.
func killProcess(pid int, start uint64, wait time.Duration) error {
	if !isProcess(pid, start) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process %d: %w", pid, err)
	}
	deadline := time.Now().Add(wait)
	for isProcess(pid, start) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still alive %v after SIGKILL", pid, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// selfStartTime is the start time of the current process.
func selfStartTime() (uint64, error) { return processStartTime(os.Getpid()) }
