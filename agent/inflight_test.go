package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestInflightWaitsForEveryCall(t *testing.T) {
	f := newInflight()
	if err := f.wait(context.Background()); err != nil {
		t.Fatalf("nothing in flight: %v", err)
	}
	done1, done2 := f.add(), f.add()
	waited := make(chan error, 1)
	go func() { waited <- f.wait(context.Background()) }()
	done1()
	done1() // a second call of the same done does not count twice
	select {
	case err := <-waited:
		t.Fatalf("wait returned (%v) with a call still in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	done2()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	// It starts over.
	done3 := f.add()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a call in flight and an ended context: %v", err)
	}
	done3()
	if err := f.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
