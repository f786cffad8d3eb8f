package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podWatcher follows the pods of a namespace as the API server has them.
type podWatcher struct {
	lister interface {
		Get(name string) (*corev1.Pod, error)
	}
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
}

// watchPods starts a pod informer on namespace; it runs until ctx ends.
func watchPods(ctx context.Context, client kubernetes.Interface, namespace string) (*podWatcher, error) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	inf := f.Core().V1().Pods()
	w := &podWatcher{changed: make(chan struct{})}
	kick := func() {
		w.mu.Lock()
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	}); err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	w.lister = inf.Lister().Pods(namespace)
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("watch pods: %v cache never synced", typ)
		}
	}
	return w, nil
}

// waitAll waits until cond holds for every named pod (nil: the pod does
// not exist), at most timeout; the error names the pods still waited for.
func (w *podWatcher) waitAll(ctx context.Context, names []string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		var waiting []string
		for _, name := range names {
			p, err := w.lister.Get(name)
			if err != nil {
				p = nil
			}
			if !cond(p) {
				waiting = append(waiting, name)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			if len(waiting) > 5 {
				waiting = append(waiting[:5], fmt.Sprintf("and %d more", len(waiting)-5))
			}
			return fmt.Errorf("%d pods not %s after %s: %s", len(waiting), what, timeout, strings.Join(waiting, ", "))
		}
	}
}

// requestCounter counts the HTTP requests of a client.
type requestCounter struct{ n atomic.Int64 }

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.n.Add(1)
		return rt.RoundTrip(r)
	})
}

func (c *requestCounter) load() int64 { return c.n.Load() }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// churnDeleteDetail explains the deletion figures.
const churnDeleteDetail = "the mock's pods keep their objects for their 30 s grace period: virtual-kubelet v1.14.1 deletes a pod object " +
	"when the grace period ends, a status-only update not requeuing the pod; vk-applevm deletes it once the containers are gone, as the kubelet does"

// churnSection turns the rounds into figures: ours against the mock,
// total and each phase, as medians of the rounds and the median of the
// per-round ratios (the two ran back to back, under about the same load).
// variants[0] is ours, variants[1] the mock.
func churnSection(s section, samples [][]churnSample, variants []*churnVariant) section {
	ours, mock := samples[0], samples[1]
	series := func(ss []churnSample, part func(churnSample) time.Duration) []time.Duration {
		out := make([]time.Duration, len(ss))
		for i, x := range ss {
			out[i] = part(x)
		}
		return out
	}
	total := func(x churnSample) time.Duration { return x.Create + x.Delete }
	create := func(x churnSample) time.Duration { return x.Create }
	del := func(x churnSample) time.Duration { return x.Delete }
	requests := func(ss []churnSample) int64 {
		var r []int64
		for _, x := range ss {
			r = append(r, x.Requests)
		}
		return median(r)
	}
	pods := *churnPods
	ref := func(part func(churnSample) time.Duration) *results.Reference {
		return &results.Reference{Name: variants[1].name, Value: median(series(mock, part)).Seconds()}
	}
	// × as fast: the mock's time over ours, per round.
	speed := func(part func(churnSample) time.Duration) float64 {
		return median(pairedRatios(series(mock, part), series(ours, part)))
	}
	detail := fmt.Sprintf("%d rounds after a warm-up, medians; %s: API requests per round %d against the mock's %d; same control plane, same client settings, variants alternating",
		len(ours), variants[0].name, requests(ours), requests(mock))
	s.Rows = append(s.Rows,
		measured(results.Figure{
			ID:     "churn.total",
			Figure: fmt.Sprintf("provider churn, %d pods created → all Running, then deleted → all gone (instant in-process runtime, real control plane), × as fast as virtual-kubelet's mock provider", pods),
			Value:  median(series(ours, total)).Seconds(), Unit: "s", Reference: ref(total), Ratio: speed(total),
			Target: results.RatioAtLeast(1), Detail: detail, Command: churnCommand,
		}),
		measured(results.Figure{
			ID:     "churn.create",
			Figure: fmt.Sprintf("… of which %d pods created → all Running", pods),
			Value:  median(series(ours, create)).Seconds(), Unit: "s", Reference: ref(create), Ratio: speed(create), Command: churnCommand,
		}),
		measured(results.Figure{
			ID:     "churn.delete",
			Figure: fmt.Sprintf("… and %d pods deleted → all gone", pods),
			Value:  median(series(ours, del)).Seconds(), Unit: "s", Reference: ref(del), Ratio: speed(del), Command: churnCommand,
			Detail: churnDeleteDetail,
		}),
	)
	s.Rows = append(s.Rows, info("API requests of each node per round (median)",
		fmt.Sprintf("%d (mock: %d)", requests(ours), requests(mock))))
	return s
}
