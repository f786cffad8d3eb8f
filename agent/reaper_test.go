package agent

import (
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"
)

// fakeWait4 plays back exits: children that have exited, by pid.
type fakeWait4 struct {
	exited map[int]syscall.WaitStatus
	order  []int // reap order for pid -1
	calls  []int
}

func (f *fakeWait4) wait(pid int, ws *syscall.WaitStatus, options int, _ *syscall.Rusage) (int, error) {
	f.calls = append(f.calls, pid)
	if options&syscall.WNOHANG == 0 {
		return 0, errors.New("reaper must never block")
	}
	if pid == -1 {
		if len(f.order) == 0 {
			if len(f.exited) == 0 {
				return -1, syscall.ECHILD
			}
			return 0, nil
		}
		pid = f.order[0]
		f.order = f.order[1:]
	}
	st, ok := f.exited[pid]
	if !ok {
		return 0, nil
	}
	delete(f.exited, pid)
	*ws = st
	return pid, nil
}

func exitCode(code int) syscall.WaitStatus { return syscall.WaitStatus(code << 8) }

func TestReaperAllDispatchesByPidAndCountsOrphans(t *testing.T) {
	f := &fakeWait4{exited: map[int]syscall.WaitStatus{}}
	r := NewReaper(true, f.wait, nil)
	got := map[int]int{}
	for _, pid := range []int{10, 11} {
		if _, err := r.Start(func() (int, error) { return pid, nil }, func(ws syscall.WaitStatus) { got[pid] = ws.ExitStatus() }); err != nil {
			t.Fatal(err)
		}
	}
	// 11 and an orphan (99) exit; 10 still runs.
	f.exited[11], f.exited[99] = exitCode(3), exitCode(0)
	f.order = []int{99, 11}
	r.Reap()
	if len(got) != 1 || got[11] != 3 || r.Orphans() != 1 || r.Running() != 1 {
		t.Fatalf("after first reap: got %v orphans %d running %d", got, r.Orphans(), r.Running())
	}
	f.exited[10] = syscall.WaitStatus(syscall.SIGKILL) // killed by a signal
	f.order = []int{10}
	r.Reap()
	if _, ok := got[10]; !ok || r.Running() != 0 {
		t.Fatalf("after second reap: got %v running %d", got, r.Running())
	}
}

func TestReaperOwnPidsOnlyWaitsForEachRegisteredPid(t *testing.T) {
	f := &fakeWait4{exited: map[int]syscall.WaitStatus{20: exitCode(1), 77: exitCode(0)}}
	r := NewReaper(false, f.wait, nil)
	var codes []int
	for _, pid := range []int{20, 21} {
		r.Start(func() (int, error) { return pid, nil }, func(ws syscall.WaitStatus) { codes = append(codes, ws.ExitStatus()) })
	}
	r.Reap()
	if !slices.Equal(codes, []int{1}) || r.Running() != 1 {
		t.Fatalf("codes %v running %d", codes, r.Running())
	}
	if slices.Contains(f.calls, -1) || slices.Contains(f.calls, 77) {
		t.Fatalf("waited for something it did not start: %v", f.calls)
	}
	if _, ok := f.exited[77]; !ok {
		t.Fatal("a foreign child was reaped")
	}
}

func TestReaperStartFailureRegistersNothing(t *testing.T) {
	r := NewReaper(true, (&fakeWait4{}).wait, nil)
	if _, err := r.Start(func() (int, error) { return 0, syscall.ENOENT }, func(syscall.WaitStatus) { t.Fatal("called") }); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("err %v", err)
	}
	if r.Running() != 0 {
		t.Fatal("failed start registered")
	}
}

func TestReaperHoldsItsLockAcrossStart(t *testing.T) {
	// A child that exits before Start returns must still reach its waiter:
	// a Reap racing with the fork has to wait for the registration.
	f := &fakeWait4{exited: map[int]syscall.WaitStatus{}}
	r := NewReaper(true, f.wait, nil)
	reaped := make(chan int, 1)
	reapDone := make(chan struct{})
	_, err := r.Start(func() (int, error) {
		f.exited[30], f.order = exitCode(5), []int{30}
		go func() { r.Reap(); close(reapDone) }()
		// Without the lock, Reap would collect pid 30 now, as an orphan.
		time.Sleep(20 * time.Millisecond)
		return 30, nil
	}, func(ws syscall.WaitStatus) { reaped <- ws.ExitStatus() })
	if err != nil {
		t.Fatal(err)
	}
	<-reapDone
	select {
	case code := <-reaped:
		if code != 5 {
			t.Fatalf("code %d", code)
		}
	default:
		t.Fatalf("exit lost (orphans counted: %d)", r.Orphans())
	}
}

func TestExitStatusOf(t *testing.T) {
	oomAsked := false
	for _, tc := range []struct {
		ws        syscall.WaitStatus
		oomGrew   bool
		code, sig int32
		oom       bool
	}{
		{exitCode(0), true, 0, 0, false},
		{exitCode(42), true, 42, 0, false},
		{syscall.WaitStatus(syscall.SIGTERM), true, 143, 15, false},
		{syscall.WaitStatus(syscall.SIGKILL), false, 137, 9, false},
		{syscall.WaitStatus(syscall.SIGKILL), true, 137, 9, true},
	} {
		st := exitStatusOf(tc.ws, func() bool { oomAsked = true; return tc.oomGrew })
		if st.GetExitCode() != tc.code || st.GetSignal() != tc.sig || st.GetOomKilled() != tc.oom {
			t.Errorf("%v: got %+v", tc.ws, st)
		}
	}
	if !oomAsked {
		t.Fatal("oom counter never consulted")
	}
}
