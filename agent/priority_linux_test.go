package agent

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLowerThreadPriorityOnlyThisThread(t *testing.T) {
	// Keep the test on its thread, so the goroutine below (whose thread
	// ends with it) runs on another.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := unix.Gettid()
	before, err := unix.Getpriority(unix.PRIO_PROCESS, self)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		tid, nice int
		err       error
	}
	res := make(chan result, 1)
	go func() {
		// As ModuleLoader.Run does: the thread ends with the goroutine.
		runtime.LockOSThread()
		tid := unix.Gettid()
		if err := lowerThreadPriority(); err != nil {
			res <- result{err: err}
			return
		}
		// getpriority returns 20-nice on the raw syscall (x/sys/unix
		// passes it through): nice 19 reads as 1.
		p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		res <- result{tid, 20 - p, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.nice != backgroundNice {
		t.Fatalf("thread %d has nice %d, want %d", r.tid, r.nice, backgroundNice)
	}
	after, err := unix.Getpriority(unix.PRIO_PROCESS, self)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the test's own thread changed priority: %d -> %d", before, after)
	}
}
