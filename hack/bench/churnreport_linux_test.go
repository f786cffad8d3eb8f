package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestPodWatcherWaitAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	w, err := watchPods(ctx, client, churnNS)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b"}
	for _, n := range names {
		if _, err := client.CoreV1().Pods(churnNS).Create(ctx, churnPod(n, "x"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	running := func(p *corev1.Pod) bool { return p != nil && p.Status.Phase == corev1.PodRunning }
	err = w.waitAll(ctx, names, 50*time.Millisecond, "Running", running)
	if err == nil || !strings.Contains(err.Error(), "2 pods not Running") {
		t.Fatalf("waitAll before any pod runs: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.waitAll(ctx, names, 10*time.Second, "Running", running) }()
	for _, n := range names {
		p := churnPod(n, "x")
		p.Status.Phase = corev1.PodRunning
		if _, err := client.CoreV1().Pods(churnNS).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("waitAll once every pod runs: %v", err)
	}
	for _, n := range names {
		if err := client.CoreV1().Pods(churnNS).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.waitAll(ctx, names, 10*time.Second, "gone", func(p *corev1.Pod) bool { return p == nil }); err != nil {
		t.Fatalf("waitAll for deleted pods: %v", err)
	}
}

func TestForEach(t *testing.T) {
	names := make([]string, 57)
	for i := range names {
		names[i] = string(rune('a' + i%26))
	}
	var n atomic.Int64
	if err := forEach(context.Background(), names, func(context.Context, string) error { n.Add(1); return nil }); err != nil || n.Load() != 57 {
		t.Fatalf("forEach: %d calls, %v; want 57, nil", n.Load(), err)
	}
	boom := errors.New("boom")
	err := forEach(context.Background(), names, func(_ context.Context, name string) error {
		if name == "c" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("forEach with a failing call: %v, want boom", err)
	}
}

func TestChurnSectionRatios(t *testing.T) {
	old := *churnPods
	*churnPods = 100
	defer func() { *churnPods = old }()
	s := func(create, del int) churnSample {
		return churnSample{Create: time.Duration(create) * time.Second, Delete: time.Duration(del) * time.Second, Requests: 400}
	}
	// Ours: 2+1, 3+1, 2+2 s; the mock: 4+2, 4+1, 5+1 s: twice as fast
	// on the median round.
	samples := [][]churnSample{{s(2, 1), s(3, 1), s(2, 2)}, {s(4, 2), s(4, 1), s(5, 1)}}
	variants := []*churnVariant{{name: "ours"}, {name: "mock"}}
	sec := churnSection(section{}, samples, variants)
	if len(sec.Rows) != 4 || !strings.Contains(sec.Rows[3].Value, "400 (mock: 400)") {
		t.Fatalf("rows %+v, want total, create, delete and the requests", sec.Rows)
	}
	total := sec.Rows[0].figure
	if total == nil || total.ID != "churn.total" || total.Value != 4 || total.Reference.Value != 6 || total.Ratio != 1.5 || total.Verdict != results.Pass {
		t.Errorf("total %+v: want 4 s against 6 s, 1.5× (median of 2, 1.25, 1.5), PASS", total)
	}
	if c := sec.Rows[1].figure; c.Value != 2 || c.Reference.Value != 4 || c.Ratio != 2 {
		t.Errorf("create %+v: want 2 s against 4 s, 2×", c)
	}
	// Slower than the mock fails.
	sec = churnSection(section{}, [][]churnSample{samples[1], samples[0]}, variants)
	if v := sec.Rows[0].figure; v.Ratio >= 1 || v.Verdict != results.Fail {
		t.Errorf("slower than the mock: %+v, want ratio < 1 and FAIL", v)
	}
}
