package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// DefaultPendingOutputBytes bounds the output of a process without a log
// name that is kept while nobody is attached (the most recent bytes are
// kept, like a terminal's scrollback).
const DefaultPendingOutputBytes = 256 << 10

// loggedPendingBytes bounds what a logged process keeps for its first
// attacher: the output of a short command (`kubectl run -i` attaches only
// once the pod runs); everything is in the log anyway.
const loggedPendingBytes = 64 << 10

// chunk is one read from a process's stdout or stderr.
type chunk struct {
	stream logframe.Stream
	data   []byte
}

// outputHub fans one process's output out to the log queue (when the
// process has a log name) and to every attacher. Writers are the pipe
// readers; they block while the log queue or an attacher is full, which is
// the backpressure that eventually blocks the process on its pipe.
type outputHub struct {
	logName      string
	logs         *LogQueue // nil when the process is not logged
	pendingLimit int

	// logMu orders the log's frames: writers hold it while they queue a
	// chunk, endLog while it queues the end frame, so no chunk can follow
	// the end frame on the log port.
	logMu    sync.Mutex
	logEnded bool

	mu           sync.Mutex
	attachers    map[*attacher]struct{}
	attached     bool // someone has attached
	pending      []chunk
	pendingBytes int
	dropped      int
	closed       bool
	done         chan struct{}
}

func newOutputHub(logName string, logs *LogQueue, pendingLimit int) *outputHub {
	if logName == "" {
		logs = nil
	}
	if logs != nil {
		pendingLimit = min(pendingLimit, loggedPendingBytes)
	}
	return &outputHub{
		logName:      logName,
		logs:         logs,
		pendingLimit: pendingLimit,
		attachers:    map[*attacher]struct{}{},
		done:         make(chan struct{}),
	}
}

// attacher is one Attach call's view of the output.
type attacher struct {
	wantStdout, wantStderr bool
	ch                     chan chunk    // closed by the hub when output ends
	gone                   chan struct{} // closed when the attacher leaves
	leave                  sync.Once
}

func (a *attacher) wants(s logframe.Stream) bool {
	return (s == logframe.Stdout && a.wantStdout) || (s == logframe.Stderr && a.wantStderr)
}

// attacherQueue is how many chunks an attacher may lag behind before
// writers wait for it.
const attacherQueue = 16

// write delivers one chunk; ctx bounds the wait on the log queue (the
// server's lifetime).
func (h *outputHub) write(ctx context.Context, c chunk) error {
	if h.logs != nil {
		h.logMu.Lock()
		var err error
		if !h.logEnded {
			err = h.logs.Put(ctx, logframe.Frame{Name: h.logName, Stream: c.stream, Data: c.data})
		}
		h.logMu.Unlock()
		if err != nil {
			return err
		}
	}
	h.mu.Lock()
	var targets []*attacher
	for a := range h.attachers {
		if a.wants(c.stream) {
			targets = append(targets, a)
		}
	}
	// Output nobody receives is kept for the next attacher; a logged
	// process keeps it only for its first attacher, which gets the output
	// from the start as if it had attached before it. Later attachers get
	// output from their attach on, as a kubelet's attach does; the log has
	// the rest.
	if len(targets) == 0 && (h.logs == nil || !h.attached) {
		h.keepPending(c)
	}
	h.mu.Unlock()
	for _, a := range targets {
		select {
		case a.ch <- c:
		case <-a.gone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// keepPending appends c, dropping the oldest chunks beyond the bound.
// Called with h.mu held.
func (h *outputHub) keepPending(c chunk) {
	h.pending = append(h.pending, c)
	h.pendingBytes += len(c.data)
	for h.pendingBytes > h.pendingLimit && len(h.pending) > 0 {
		over := h.pendingBytes - h.pendingLimit
		first := &h.pending[0]
		if over < len(first.data) {
			first.data = first.data[over:]
			h.pendingBytes -= over
			h.dropped += over
			break
		}
		h.pendingBytes -= len(first.data)
		h.dropped += len(first.data)
		h.pending = h.pending[1:]
	}
}

// attach registers an attacher and hands it the pending output, which it
// must deliver before anything from its channel.
func (h *outputHub) attach(wantStdout, wantStderr bool) (*attacher, []chunk) {
	a := &attacher{
		wantStdout: wantStdout,
		wantStderr: wantStderr,
		ch:         make(chan chunk, attacherQueue),
		gone:       make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var pending []chunk
	for _, c := range h.pending {
		if a.wants(c.stream) {
			pending = append(pending, c)
		}
	}
	h.pending, h.pendingBytes = nil, 0
	h.attached = true
	if h.closed {
		close(a.ch)
	} else {
		h.attachers[a] = struct{}{}
	}
	return a, pending
}

// attachedBefore reports whether anyone has attached.
func (h *outputHub) attachedBefore() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attached
}

// detach removes an attacher; writers blocked on it move on.
func (h *outputHub) detach(a *attacher) {
	a.leave.Do(func() { close(a.gone) })
	h.mu.Lock()
	delete(h.attachers, a)
	h.mu.Unlock()
}

// finish marks the end of output. Call it once, after every writer has
// returned.
func (h *outputHub) finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for a := range h.attachers {
		close(a.ch)
	}
	clear(h.attachers)
	close(h.done)
}

// endLog queues the log's end frame (logframe.End) after every chunk
// queued so far and stops logging: the host takes the end frame as the
// promise that the log file is complete. Call it once the output has
// settled: every pipe reader returned (then nothing can follow), or the
// drain timeout passed while a daemonized child still holds a pipe; its
// later output reaches neither attachers (they were released at the same
// moment) nor the log, as containerd drops a process's output after its
// 2 s I/O wait. It is a no-op for an unlogged process or a second call.
func (h *outputHub) endLog(ctx context.Context) error {
	if h.logs == nil {
		return nil
	}
	h.logMu.Lock()
	defer h.logMu.Unlock()
	if h.logEnded {
		return nil
	}
	h.logEnded = true
	if err := h.logs.Put(ctx, logframe.Frame{Name: h.logName, Stream: logframe.End}); err != nil {
		return fmt.Errorf("end log %s: %w", h.logName, err)
	}
	return nil
}
