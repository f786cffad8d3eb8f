package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// DefaultLogQueueBytes bounds the container output waiting for the log
// port: 1 MiB is a few seconds of a chatty process, and small against the
// agent's 10 MiB memory budget.
const DefaultLogQueueBytes = 1 << 20

// ErrLogQueueClosed is returned by Put after Close.
var ErrLogQueueClosed = errors.New("log queue closed")

// LogQueue carries frames from the processes' output readers to the one
// goroutine that writes the log port. A write to a virtio port blocks while
// the host end is not connected; the queue absorbs that up to its bound and
// then blocks Put, so the process's pipe fills and the process waits, as it
// would on a real pipe. Nothing is dropped.
type LogQueue struct {
	limit int

	mu     sync.Mutex
	frames []logframe.Frame
	bytes  int
	closed bool
	space  chan struct{} // closed (and replaced) whenever bytes shrink
	ready  chan struct{} // wakes the writer
}

// NewLogQueue returns a queue holding at most limit bytes of data (one
// frame is always admitted, however large).
func NewLogQueue(limit int) *LogQueue {
	return &LogQueue{limit: limit, space: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// Put queues f, blocking while the queue is full.
func (q *LogQueue) Put(ctx context.Context, f logframe.Frame) error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrLogQueueClosed
		}
		if q.bytes == 0 || q.bytes+len(f.Data) <= q.limit {
			q.frames = append(q.frames, f)
			q.bytes += len(f.Data)
			q.mu.Unlock()
			select {
			case q.ready <- struct{}{}:
			default:
			}
			return nil
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Len reports the queued bytes.
func (q *LogQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// WaitEmpty blocks until every frame queued so far has been written (or
// its write failed), or ctx ends.
func (q *LogQueue) WaitEmpty(ctx context.Context) error {
	for {
		q.mu.Lock()
		if len(q.frames) == 0 {
			q.mu.Unlock()
			return nil
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close makes Put fail from now on; Run still writes what is queued.
func (q *LogQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Run writes queued frames to w until ctx ends, or until the queue is
// closed and empty. A frame stays accounted until it is written, so the
// bound covers the frame blocked in the port. A failed write loses that
// frame (the port is gone or broken); Run logs it and goes on.
func (q *LogQueue) Run(ctx context.Context, w io.Writer, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		q.mu.Lock()
		if len(q.frames) == 0 {
			closed := q.closed
			q.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-q.ready:
				continue
			case <-ctx.Done():
				return
			}
		}
		f := q.frames[0]
		q.mu.Unlock()

		err := logframe.Write(w, f)

		q.mu.Lock()
		q.frames[0] = logframe.Frame{}
		q.frames = q.frames[1:]
		q.bytes -= len(f.Data)
		close(q.space)
		q.space = make(chan struct{})
		q.mu.Unlock()
		if err != nil {
			log.Error("write container output to the log port", "log", f.Name, "err", err)
			// Do not spin on a port that fails every write.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}
