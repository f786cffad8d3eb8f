//go:build linux

package main

import (
	"context"
	"testing"
	"time"
)

// TestPodBenchAgainstInstantVMs runs the pod benchmark's machinery
// (virtual-kubelet's pod controller, the provider, the in-memory API
// server) over VMs that start at once: pods reach Running and their VMs
// are gone after the deletion, so `make bench` measures, not debugs.
func TestPodBenchAgainstInstantVMs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := newInstantRuntime()
	b, err := newPodBench(ctx, rt, nil, t.TempDir(), "busybox", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 5} {
		ds, err := b.pods(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != n {
			t.Fatalf("%d start times for %d pods", len(ds), n)
		}
		for _, d := range ds {
			if d <= 0 || d > 30*time.Second {
				t.Fatalf("start times %v", ds)
			}
		}
		if left, _ := rt.VMs(ctx); len(left) != 0 {
			t.Fatalf("%d VMs left after the pods' deletion", len(left))
		}
	}
}
