package provider

import "time"

// crashBackoff is the kubelet's restart back-off for one container: the
// delay starts at initial and doubles up to max; a container that ran
// longer than reset before exiting starts over at initial (the kubelet
// uses 10 s, 300 s and 2×max).
type crashBackoff struct {
	initial, max, reset time.Duration
	next                time.Duration
}

func newCrashBackoff(initial, max time.Duration) *crashBackoff {
	return &crashBackoff{initial: initial, max: max, reset: 2 * max}
}

// delay returns how long to wait before the next restart of a container
// that ran for ranFor.
func (b *crashBackoff) delay(ranFor time.Duration) time.Duration {
	if b.next == 0 || ranFor > b.reset {
		b.next = b.initial
	}
	d := b.next
	b.next = min(b.next*2, b.max)
	return d
}
