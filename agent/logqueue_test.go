package agent

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// gatedWriter blocks every write until opened, like a virtio port whose
// host end is not connected.
type gatedWriter struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func TestLogQueueBackpressureWithoutLoss(t *testing.T) {
	q := NewLogQueue(100)
	w := &gatedWriter{open: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan struct{})
	go func() { q.Run(ctx, w, nil); close(runDone) }()

	frame := func(i int) logframe.Frame {
		return logframe.Frame{Name: "p", Stream: logframe.Stdout, Data: bytes.Repeat([]byte{byte('a' + i)}, 40)}
	}
	// Two 40-byte frames fit; the first sits in the blocked writer (still
	// counted), the third would exceed 100 bytes and must wait.
	for i := 0; i < 2; i++ {
		if err := q.Put(ctx, frame(i)); err != nil {
			t.Fatal(err)
		}
	}
	putDone := make(chan error, 1)
	go func() { putDone <- q.Put(ctx, frame(2)) }()
	select {
	case err := <-putDone:
		t.Fatalf("Put returned (%v) while the queue was full", err)
	case <-time.After(50 * time.Millisecond):
	}
	short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancelShort()
	if err := q.Put(short, frame(3)); err == nil {
		t.Fatal("Put with an expiring context succeeded on a full queue")
	}
	close(w.open) // the host connects
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}
	q.Close()
	<-runDone
	r := logframe.NewReader(bytes.NewReader(w.buf.Bytes()))
	for i := 0; i < 3; i++ {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f.Data, frame(i).Data) {
			t.Fatalf("frame %d out of order: %q", i, f.Data[:1])
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("extra data: %v", err)
	}
	if err := q.Put(ctx, frame(0)); err != ErrLogQueueClosed {
		t.Fatalf("Put after Close: %v", err)
	}
}

func TestLogQueueAdmitsAFrameLargerThanTheBound(t *testing.T) {
	q := NewLogQueue(10)
	if err := q.Put(context.Background(), logframe.Frame{Name: "p", Stream: logframe.Stdout, Data: make([]byte, 50)}); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 50 {
		t.Fatalf("len %d", q.Len())
	}
}

func TestLogQueueWaitEmpty(t *testing.T) {
	q := NewLogQueue(1 << 10)
	w := &gatedWriter{open: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx, w, nil)
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatalf("empty queue: %v", err)
	}
	if err := q.Put(ctx, logframe.Frame{Name: "p", Stream: logframe.Stdout, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, logframe.Frame{Name: "p", Stream: logframe.End}); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if err := q.WaitEmpty(short); err == nil {
		t.Fatal("WaitEmpty returned while the writer was blocked")
	}
	close(w.open)
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	// The end frame, which carries no data, was written too.
	r := logframe.NewReader(bytes.NewReader(w.buf.Bytes()))
	for _, want := range []logframe.Stream{logframe.Stdout, logframe.End} {
		if f, err := r.Next(); err != nil || f.Stream != want {
			t.Fatalf("frame %+v %v, want %v", f, err, want)
		}
	}
}
