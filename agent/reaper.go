package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// WaitFunc has the signature of syscall.Wait4; tests substitute a fake.
type WaitFunc func(pid int, status *syscall.WaitStatus, options int, rusage *syscall.Rusage) (int, error)

// Reaper owns every wait for child processes. Nothing else in the agent may
// wait (os/exec's Cmd.Wait would race with it and lose exit statuses):
// processes are started through Start, and their exit is delivered to the
// callback registered with them.
//
// As PID 1 (reapAll) it waits for any child, which also reaps the orphans
// the kernel re-parents to init; elsewhere it waits only for the pids it
// started, so it coexists with other code of the same process.
type Reaper struct {
	wait    WaitFunc
	reapAll bool
	log     *slog.Logger

	mu      sync.Mutex
	waiters map[int]func(syscall.WaitStatus)
	orphans int
}

// NewReaper returns a reaper using wait (syscall.Wait4 when nil).
func NewReaper(reapAll bool, wait WaitFunc, log *slog.Logger) *Reaper {
	if wait == nil {
		wait = syscall.Wait4
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reaper{wait: wait, reapAll: reapAll, log: log, waiters: map[int]func(syscall.WaitStatus){}}
}

// Start runs start (which forks the child and returns its pid) and
// registers onExit for that pid. The reaper's lock is held throughout, so
// a child that exits at once cannot be reaped before its waiter exists.
func (r *Reaper) Start(start func() (int, error), onExit func(syscall.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = onExit
	return pid, nil
}

// Reap collects every child that has exited and calls the waiters'
// callbacks (outside the lock). Call it on SIGCHLD; it never blocks.
func (r *Reaper) Reap() {
	type exit struct {
		fn     func(syscall.WaitStatus)
		status syscall.WaitStatus
	}
	var exits []exit
	r.mu.Lock()
	if r.reapAll {
		for {
			var ws syscall.WaitStatus
			pid, err := r.wait(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break // ECHILD: no children; 0: none exited
			}
			if fn, ok := r.waiters[pid]; ok {
				delete(r.waiters, pid)
				exits = append(exits, exit{fn, ws})
			} else {
				r.orphans++
			}
		}
	} else {
		for pid, fn := range r.waiters {
			var ws syscall.WaitStatus
			got, err := r.wait(pid, &ws, syscall.WNOHANG, nil)
			for errors.Is(err, syscall.EINTR) {
				got, err = r.wait(pid, &ws, syscall.WNOHANG, nil)
			}
			if err != nil {
				// ECHILD: someone else reaped it; report it as gone
				// rather than wait forever.
				r.log.Warn("wait for child", "pid", pid, "err", err)
				delete(r.waiters, pid)
				exits = append(exits, exit{fn, syscall.WaitStatus(0xff << 8)})
				continue
			}
			if got == pid {
				delete(r.waiters, pid)
				exits = append(exits, exit{fn, ws})
			}
		}
	}
	r.mu.Unlock()
	for _, e := range exits {
		e.fn(e.status)
	}
}

// Running reports how many started children have not been reaped.
func (r *Reaper) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiters)
}

// Orphans reports how many unknown children (re-parented orphans) were
// reaped.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

// Run reaps on every SIGCHLD until ctx ends. Signals coalesce, which is
// why Reap collects every exited child, not one.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	r.Reap() // children that exited before Notify
	for {
		select {
		case <-ch:
			r.Reap()
		case <-ctx.Done():
			return
		}
	}
}
