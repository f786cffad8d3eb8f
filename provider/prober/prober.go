// Package prober runs the startup, readiness and liveness probes of a pod's
// containers, as the kubelet's prober manager does: one probe worker per
// running container instance, results reported to the pod worker, which
// owns what they mean (Started, Ready, a restart). Probe periods, initial
// delays and timeouts are waited on an injected clock.
package prober

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Kind is a probe's purpose.
type Kind int

const (
	Startup Kind = iota
	Readiness
	Liveness
)

func (k Kind) String() string {
	switch k {
	case Startup:
		return "Startup"
	case Readiness:
		return "Readiness"
	case Liveness:
		return "Liveness"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Result is what a probe worker found out about one container instance.
// A container without a startup probe is reported started at once; one
// without a readiness probe, ready once started.
type Result struct {
	Container string
	Instance  int32
	Kind      Kind
	Success   bool
	// Message, on a failed startup or liveness probe, is the kubelet's
	// reason for the restart that follows.
	Message string
}

// Manager owns the probe workers of one pod.
type Manager struct {
	clock  clock.Clock
	report func(Result)
	event  func(eventType, reason, message string)

	mu      sync.Mutex
	workers map[string]*worker // by container name
}

type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a manager that reports results to report and records
// Unhealthy events through event.
func NewManager(clk clock.Clock, report func(Result), event func(eventType, reason, message string)) *Manager {
	return &Manager{clock: clk, report: report, event: event, workers: map[string]*worker{}}
}

// Add starts probing instance of a container, replacing the probes of an
// earlier instance.
func (m *Manager) Add(instance int32, spec corev1.Container, t Target) {
	m.Remove(spec.Name)
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.workers[spec.Name] = w
	m.mu.Unlock()
	go func() {
		defer close(w.done)
		m.run(ctx, instance, spec, t)
	}()
}

// Remove stops probing a container and waits for its worker to end, so no
// result of the old instance arrives afterwards.
func (m *Manager) Remove(container string) {
	m.mu.Lock()
	w := m.workers[container]
	delete(m.workers, container)
	m.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

// Stop ends every probe worker.
func (m *Manager) Stop() {
	m.mu.Lock()
	names := make([]string, 0, len(m.workers))
	for n := range m.workers {
		names = append(names, n)
	}
	m.mu.Unlock()
	for _, n := range names {
		m.Remove(n)
	}
}

// run probes one instance: the startup probe first, then readiness and
// liveness side by side, as the kubelet holds the others back until the
// container has started.
func (m *Manager) run(ctx context.Context, instance int32, spec corev1.Container, t Target) {
	result := func(k Kind, ok bool, msg string) {
		if ctx.Err() == nil {
			m.report(Result{Container: spec.Name, Instance: instance, Kind: k, Success: ok, Message: msg})
		}
	}
	if p := spec.StartupProbe; p != nil {
		if !m.loop(ctx, spec, t, p, Startup, result) {
			return
		}
	}
	result(Startup, true, "")
	var wg sync.WaitGroup
	if p := spec.ReadinessProbe; p != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.loop(ctx, spec, t, p, Readiness, result)
		}()
	} else {
		result(Readiness, true, "")
	}
	if p := spec.LivenessProbe; p != nil {
		m.loop(ctx, spec, t, p, Liveness, result)
	}
	wg.Wait()
}

// loop runs p every period after its initial delay and reports each result
// once its threshold is met. A startup probe ends at its first success
// (true); a failed startup or liveness probe ends the loop, since the
// container is restarted.
func (m *Manager) loop(ctx context.Context, spec corev1.Container, t Target, p *corev1.Probe, kind Kind, result func(Kind, bool, string)) bool {
	period := secondsOr(p.PeriodSeconds, 10)
	timeout := secondsOr(p.TimeoutSeconds, 1)
	successThreshold := max(int(p.SuccessThreshold), 1)
	failureThreshold := int(p.FailureThreshold)
	if failureThreshold <= 0 {
		failureThreshold = 3
	}
	if !sleep(ctx, m.clock, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return false
	}
	var successes, failures int
	for {
		err := Check(ctx, m.clock, timeout, t, spec, &p.ProbeHandler)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= successThreshold {
				if kind == Startup {
					return true
				}
				result(kind, true, "")
			}
		} else {
			successes, failures = 0, failures+1
			m.event(corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %v", kind, err))
			if failures >= failureThreshold {
				msg := ""
				if kind != Readiness {
					msg = fmt.Sprintf("Container %s failed %s probe, will be restarted", spec.Name, strings.ToLower(kind.String()))
				}
				result(kind, false, msg)
				if kind != Readiness {
					return false
				}
			}
		}
		if !sleep(ctx, m.clock, period) {
			return false
		}
	}
}

func secondsOr(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

// sleep waits d on clk; false when ctx ended first.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// withTimeout is context.WithTimeout on clk.
func withTimeout(ctx context.Context, clk clock.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	t := clk.NewTimer(d)
	go func() {
		defer t.Stop()
		select {
		case <-t.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
