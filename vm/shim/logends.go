package shim

import (
	"context"
	"sync"
)

// maxCompleteLogs bounds the log names remembered as complete. The node
// asks right after the process's exit, long before a thousand more logged
// processes of the same machine could have ended.
const maxCompleteLogs = 1024

// LogStatus answers WaitLog.
type LogStatus struct {
	Name string `json:"name"`
	// Complete: the guest ended this log (an end frame) and every record
	// of it is on disk, synced.
	Complete bool `json:"complete,omitempty"`
	// PortClosed: the log port has ended (the machine stopped); whatever
	// arrived is on disk and nothing more will.
	PortClosed bool `json:"portClosed,omitempty"`
}

// logEnds records which logs are complete, for WaitLog. The log pump
// writes it, the API reads it.
type logEnds struct {
	mu       sync.Mutex
	complete map[string]uint64 // name → sequence number of its completion
	order    []completion      // completions, oldest first, for the bound
	seq      uint64
	closed   bool          // the log port has ended
	changed  chan struct{} // closed and replaced on every completion
}

type completion struct {
	name string
	seq  uint64
}

func newLogEnds() *logEnds {
	return &logEnds{complete: map[string]uint64{}, changed: make(chan struct{})}
}

// markComplete records that name's log is complete on disk.
func (e *logEnds) markComplete(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	e.complete[name] = e.seq
	e.order = append(e.order, completion{name, e.seq})
	for len(e.order) > maxCompleteLogs {
		old := e.order[0]
		e.order = e.order[1:]
		if e.complete[old.name] == old.seq {
			delete(e.complete, old.name)
		}
	}
	e.wake()
}

// markLive records that name is being written (again): a log name reused
// by a later process is complete only at its own end.
func (e *logEnds) markLive(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.complete, name)
}

// closePort records that the log port has ended: no log grows any more.
func (e *logEnds) closePort() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		e.wake()
	}
}

// wake releases every waiter to look again; called with e.mu held.
func (e *logEnds) wake() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// wait blocks until name's log is complete or the port has ended, or ctx
// ends.
func (e *logEnds) wait(ctx context.Context, name string) (LogStatus, error) {
	for {
		e.mu.Lock()
		_, complete := e.complete[name]
		closed, changed := e.closed, e.changed
		e.mu.Unlock()
		if complete || closed {
			return LogStatus{Name: name, Complete: complete, PortClosed: closed}, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return LogStatus{}, ctx.Err()
		}
	}
}
