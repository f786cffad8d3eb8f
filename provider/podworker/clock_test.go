package podworker

import (
	"context"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

func TestWithTimeoutEndsOnTheClock(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clk := testingclock.NewFakeClock(at)
	ctx, cancel := withTimeout(context.Background(), clk, 5*time.Second)
	defer cancel()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(4 * time.Second)
	select {
	case <-ctx.Done():
		t.Fatal("ended before its timeout")
	default:
	}
	clk.Step(time.Second)
	<-ctx.Done()
	if until(clk, at.Add(10*time.Second)) != 5*time.Second {
		t.Fatal(until(clk, at.Add(10*time.Second)))
	}
	// A timeout already passed ends at once; cancel ends it too.
	past, cancel2 := withTimeout(context.Background(), clk, -time.Second)
	defer cancel2()
	<-past.Done()
	live, cancel3 := withTimeout(context.Background(), clk, time.Hour)
	cancel3()
	<-live.Done()
}
