package agent

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

func TestPendingOutputKeepsTheNewestBytes(t *testing.T) {
	h := newOutputHub("", nil, 10)
	ctx := context.Background()
	for _, s := range []string{"aaaa", "bbbb", "cccc", "dd"} {
		if err := h.write(ctx, chunk{logframe.Stdout, []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	h.write(ctx, chunk{logframe.Stderr, []byte("E")})
	a, pending := h.attach(true, false)
	var got bytes.Buffer
	for _, c := range pending {
		got.Write(c.data)
	}
	// 15 bytes written with a 10-byte bound: the oldest 5 are gone; the
	// newest stderr byte counts against the bound but is not wanted.
	if want := "bbbccccdd"; got.String() != want {
		t.Fatalf("pending %q, want %q", got.String(), want)
	}
	if h.dropped != 5 {
		t.Fatalf("dropped %d", h.dropped)
	}
	// Once attached, output flows to the attacher, not to pending.
	go h.write(ctx, chunk{logframe.Stdout, []byte("live")})
	select {
	case c := <-a.ch:
		if string(c.data) != "live" {
			t.Fatalf("got %q", c.data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("live output not delivered")
	}
	h.finish()
	if _, ok := <-a.ch; ok {
		t.Fatal("attacher channel not closed at finish")
	}
	late, _ := h.attach(true, true)
	if _, ok := <-late.ch; ok {
		t.Fatal("late attacher got an open channel")
	}
}

func TestSlowAttacherBlocksWritersUntilItLeaves(t *testing.T) {
	h := newOutputHub("", nil, 1<<20)
	a, _ := h.attach(true, true)
	ctx := context.Background()
	for i := 0; i < attacherQueue; i++ {
		h.write(ctx, chunk{logframe.Stdout, []byte("x")})
	}
	blocked := make(chan struct{})
	go func() {
		h.write(ctx, chunk{logframe.Stdout, []byte("y")})
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("writer did not wait for the full attacher")
	case <-time.After(50 * time.Millisecond):
	}
	h.detach(a)
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked after the attacher left")
	}
}

func TestLoggedOutputIsKeptForTheFirstAttacherOnly(t *testing.T) {
	q := NewLogQueue(1 << 20)
	h := newOutputHub("main-0", q, 1<<20)
	ctx := context.Background()
	h.write(ctx, chunk{logframe.Stderr, []byte("to log")})
	if q.Len() != 6 || len(h.pending) != 1 {
		t.Fatalf("queue %d bytes, pending %d chunks", q.Len(), len(h.pending))
	}
	// The first attacher gets the output from the start.
	a, pending := h.attach(true, true)
	if len(pending) != 1 || string(pending[0].data) != "to log" {
		t.Fatalf("first attacher's pending output %+v", pending)
	}
	h.detach(a)
	// Once someone has attached, output nobody receives is only logged.
	h.write(ctx, chunk{logframe.Stdout, []byte("later")})
	if _, pending := h.attach(true, true); len(pending) != 0 || q.Len() != 11 {
		t.Fatalf("second attacher's pending output %+v, queue %d bytes", pending, q.Len())
	}
	// A logged process keeps less: the log has everything.
	h2 := newOutputHub("main-1", q, 1<<20)
	h2.write(ctx, chunk{logframe.Stdout, make([]byte, loggedPendingBytes+10)})
	if h2.pendingBytes != loggedPendingBytes {
		t.Fatalf("logged process keeps %d bytes, want %d", h2.pendingBytes, loggedPendingBytes)
	}
}

func TestEndLogFollowsTheOutputAndStopsLogging(t *testing.T) {
	q := NewLogQueue(1 << 20)
	h := newOutputHub("0", q, 1<<20)
	ctx := context.Background()
	h.write(ctx, chunk{logframe.Stdout, []byte("out")})
	h.write(ctx, chunk{logframe.Stderr, []byte("err")})
	if err := h.endLog(ctx); err != nil {
		t.Fatal(err)
	}
	// Output after the end (a daemonized child holding the pipe past the
	// drain timeout) does not reach the log, and there is one end only.
	h.write(ctx, chunk{logframe.Stdout, []byte("late")})
	if err := h.endLog(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	q.Close()
	q.Run(ctx, &buf, nil)
	r := logframe.NewReader(&buf)
	var got []string
	for {
		f, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, f.Stream.String()+":"+string(f.Data))
	}
	if want := "stdout:out stderr:err end:"; strings.Join(got, " ") != want {
		t.Fatalf("frames %q, want %q", got, want)
	}
	// A process without a log has no end to send.
	if err := newOutputHub("", q, 10).endLog(ctx); err != nil {
		t.Fatal(err)
	}
}
