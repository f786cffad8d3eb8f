package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightSharesOneRun(t *testing.T) {
	var g flightGroup[int]
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.do(context.Background(), "k", func(context.Context) (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	// Let every goroutine join before the work finishes.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		c := g.calls["k"]
		joined := c != nil && c.waiters == len(results)
		g.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("goroutines did not join the flight")
		}
	}
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Errorf("fn ran %d times, want 1", runs.Load())
	}
	for _, v := range results {
		if v != 42 {
			t.Errorf("result %d, want 42", v)
		}
	}
}

func TestFlightCancellation(t *testing.T) {
	var g flightGroup[int]
	started := make(chan struct{})
	workCancelled := make(chan struct{})
	release := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		close(started)
		select {
		case <-ctx.Done():
			close(workCancelled)
			return 0, ctx.Err()
		case <-release:
			return 7, nil
		}
	}

	// One of two callers gives up: the work goes on for the other.
	ctx1, cancel1 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := g.do(ctx1, "k", fn); errc <- err }()
	<-started
	got := make(chan int, 1)
	go func() { v, _ := g.do(context.Background(), "k", fn); got <- v }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		n := g.calls["k"].waiters
		g.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second caller did not join")
		}
	}
	cancel1()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	select {
	case <-workCancelled:
		t.Fatal("work was cancelled although a caller still waits")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if v := <-got; v != 7 {
		t.Fatalf("remaining caller got %d, want 7", v)
	}

	// The only caller gives up: the work is cancelled.
	started, release = make(chan struct{}), make(chan struct{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { _, err := g.do(ctx2, "k2", fn); errc <- err }()
	<-started
	cancel2()
	<-errc
	select {
	case <-workCancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("work not cancelled after its last caller left")
	}
}
