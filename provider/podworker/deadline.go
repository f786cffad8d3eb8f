package podworker

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// The kubelet's words for a pod past its activeDeadlineSeconds
// (pkg/kubelet/active_deadline.go).
const (
	ReasonDeadlineExceeded  = "DeadlineExceeded"
	MessageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// enforceDeadline fails the pod once it has been active (since its
// startTime) for activeDeadlineSeconds, as the kubelet's
// activeDeadlineHandler does: phase Failed with reason DeadlineExceeded, a
// Normal event with the same reason, and its containers killed within the
// pod's grace period. UpdatePod may set or shorten the deadline, so it is
// read again whenever the pod changes.
func (w *Worker) enforceDeadline() {
	for {
		w.mu.Lock()
		seconds, start := w.pod.Spec.ActiveDeadlineSeconds, w.startTime
		w.mu.Unlock()
		var timer clock.Timer
		var fire <-chan time.Time
		if seconds != nil {
			left := time.Duration(*seconds)*time.Second - w.cfg.Clock.Since(start)
			if left <= 0 {
				w.exceedDeadline()
				return
			}
			timer = w.cfg.Clock.NewTimer(left)
			fire = timer.C()
		}
		exceeded, stopped := false, false
		select {
		case <-w.runCtx.Done():
			stopped = true
		case <-fire:
			exceeded = true
		case <-w.deadline: // the pod changed: read the deadline again
		}
		if timer != nil {
			timer.Stop()
		}
		if exceeded {
			w.exceedDeadline()
		}
		if exceeded || stopped {
			return
		}
	}
}

// exceedDeadline stops the pod; it turns Failed once its containers have
// stopped (run).
func (w *Worker) exceedDeadline() {
	w.event(corev1.EventTypeNormal, ReasonDeadlineExceeded, MessageDeadlineExceeded)
	w.mu.Lock()
	w.deadlineExceeded = true
	// The reason goes with every status from now on, as for an eviction:
	// a pod whose containers do not restart turns Failed by itself once
	// they are killed, and virtual-kubelet pushes nothing after a terminal
	// status (seen in e2e: Failed with no reason).
	w.reason, w.message = ReasonDeadlineExceeded, MessageDeadlineExceeded
	w.mu.Unlock()
	w.stop(w.gracePeriod())
}
