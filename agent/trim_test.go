package agent

import (
	"testing"
	"time"
)

// fakeTimer stands in for time.AfterFunc's timer: the test fires it.
type fakeTimer struct {
	f              func()
	resets, stops  int
	armedFor       time.Duration
	armed, stopped bool
}

func (f *fakeTimer) Reset(d time.Duration) bool {
	f.resets++
	f.armedFor, f.armed = d, true
	return true
}

func (f *fakeTimer) Stop() bool {
	f.stops++
	f.armed, f.stopped = false, true
	return true
}

func (f *fakeTimer) fire() {
	f.armed = false
	f.f()
}

func newFakeTrimmer(delay time.Duration) (*idleTrimmer, *fakeTimer, *int) {
	trims := 0
	ft := &fakeTimer{}
	t := newIdleTrimmer(delay, func() { trims++ })
	t.afterFunc = func(d time.Duration, f func()) resettable {
		ft.f, ft.armedFor, ft.armed = f, d, true
		return ft
	}
	return t, ft, &trims
}

func TestIdleTrimmerTrimsOnceAfterThePause(t *testing.T) {
	tr, ft, trims := newFakeTrimmer(time.Second)
	for range 5 { // a burst of requests, each poking at its start and end
		tr.poke()
		tr.poke()
	}
	if !ft.armed || ft.armedFor != time.Second || ft.resets != 9 {
		t.Fatalf("timer armed=%v for %v after %d resets; want armed for 1s after 9", ft.armed, ft.armedFor, ft.resets)
	}
	if *trims != 0 {
		t.Fatalf("trimmed %d times during the burst", *trims)
	}
	ft.fire()
	if *trims != 1 {
		t.Fatalf("trimmed %d times after the pause, want 1", *trims)
	}
	tr.poke() // the next burst re-arms the same timer
	if !ft.armed {
		t.Fatal("a request after a trim did not re-arm the timer")
	}
	ft.fire()
	if *trims != 2 {
		t.Fatalf("trimmed %d times after the second pause, want 2", *trims)
	}
}

func TestIdleTrimmerOffAndStopped(t *testing.T) {
	tr, ft, _ := newFakeTrimmer(-1)
	tr.poke()
	if ft.f != nil {
		t.Fatal("a negative delay armed a timer")
	}
	tr, ft, _ = newFakeTrimmer(time.Second)
	tr.poke()
	tr.stop()
	if !ft.stopped {
		t.Fatal("stop left the timer running")
	}
	resets := ft.resets
	tr.poke()
	if ft.resets != resets || ft.armed {
		t.Fatal("a poke after stop re-armed the timer")
	}
	var nilTrimmer *idleTrimmer
	nilTrimmer.poke() // servers built without New have none
	nilTrimmer.stop()
}

func TestIdleTrimmerRealTimer(t *testing.T) {
	done := make(chan struct{}, 1)
	tr := newIdleTrimmer(time.Millisecond, func() { done <- struct{}{} })
	tr.poke()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the trim never ran")
	}
	tr.stop()
}
