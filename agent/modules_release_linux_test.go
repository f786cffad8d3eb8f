package agent

import (
	"sync/atomic"
	"testing"
	"time"
)

// countingReleaser is a ModuleStatus that counts releases.
type countingReleaser struct {
	releases atomic.Int32
	done     chan struct{}
}

func (c *countingReleaser) Loaded() []string      { return nil }
func (c *countingReleaser) Done() <-chan struct{} { return c.done }
func (c *countingReleaser) Release()              { c.releases.Add(1) }

// TestFirstProcessReleasesDeferredModulesOnceAfterTheDelay: the deferred
// modules wait while the first process starts up, then load; later
// processes change nothing. A wait for every module (Rosetta's) releases
// them at once.
func TestFirstProcessReleasesDeferredModulesOnceAfterTheDelay(t *testing.T) {
	m := &countingReleaser{done: make(chan struct{})}
	s := &Server{cfg: Config{Modules: m}}
	s.firstProcessStarted()
	s.firstProcessStarted()
	if n := m.releases.Load(); n != 0 {
		t.Fatalf("released %d times at the first start, want after %v", n, deferredModulesDelay)
	}
	deadline := time.Now().Add(deferredModulesDelay + 10*time.Second)
	for m.releases.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := m.releases.Load(); n != 1 {
		t.Fatalf("released %d times, want once", n)
	}

	all := &countingReleaser{done: make(chan struct{})}
	close(all.done)
	s = &Server{cfg: Config{Modules: all}}
	if err := s.waitModules(t.Context(), "rosetta"); err != nil {
		t.Fatal(err)
	}
	if all.releases.Load() != 1 {
		t.Fatal("waiting for every module did not release the deferred ones")
	}
}
