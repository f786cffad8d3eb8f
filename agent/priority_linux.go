package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// backgroundNice is the nice value of the guest agent's background work:
// the lowest priority, a CFS weight of 15 against 1024 for nice 0
// (kernel/sched/core.c, sched_prio_to_weight), so it takes the vCPU only
// while the agent has nothing to do.
const backgroundNice = 19

// lowerThreadPriority gives the calling OS thread (not the process: on
// Linux, PRIO_PROCESS with a thread id names that thread) the background
// priority. The caller must keep its goroutine locked to the thread.
func lowerThreadPriority() error {
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, backgroundNice); err != nil {
		return fmt.Errorf("set nice %d on thread %d: %w", backgroundNice, tid, err)
	}
	return nil
}
