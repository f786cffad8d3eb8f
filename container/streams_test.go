package container

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStreamSetWaitsForInFlightStreams(t *testing.T) {
	var s streamSet
	if err := s.wait(context.Background()); err != nil {
		t.Fatalf("no streams: %v", err)
	}
	end1, err := s.begin("attach")
	if err != nil {
		t.Fatal(err)
	}
	end2, _ := s.begin("exec")
	waited := make(chan error, 1)
	go func() { waited <- s.wait(context.Background()) }()
	end1()
	end1() // ending twice counts once
	select {
	case err := <-waited:
		t.Fatalf("wait returned (%v) with a stream in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := s.inFlight(); n != 1 {
		t.Fatalf("%d in flight, want 1", n)
	}
	end2()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

func TestStreamSetWaitIsBounded(t *testing.T) {
	var s streamSet
	end, _ := s.begin("forward")
	defer end()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on a stream that never ends: %v, want the context's end", err)
	}
}

func TestStreamSetRefusesStreamsOnceClosed(t *testing.T) {
	var s streamSet
	end, _ := s.begin("attach")
	if n := s.close(); n != 1 {
		t.Fatalf("close reports %d in flight, want 1", n)
	}
	if _, err := s.begin("exec"); !errors.Is(err, ErrStopped) {
		t.Fatalf("a stream after close: %v, want ErrStopped", err)
	}
	end()
	if err := s.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
