package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// median is the middle value of xs (the upper middle for an even count);
// the zero value for none.
func median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratio is num/den as a float; 0 when den is zero (nothing measured).
func ratio[T time.Duration | uint64 | int64 | float64](num, den T) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// pairedRatios divides the i-th num by the i-th den: the variants ran
// back to back in round i, so each quotient saw about the same host load.
func pairedRatios(num, den []time.Duration) []float64 {
	n := min(len(num), len(den))
	out := make([]float64, 0, n)
	for i := range n {
		if den[i] > 0 {
			out = append(out, float64(num[i])/float64(den[i]))
		}
	}
	return out
}

// roundOrder is the order in which n variants run in a round: rotated by
// one every two rounds, and run backwards in the second of the two. A
// rotation alone keeps each variant's predecessor fixed, and what ran just
// before matters: an A/A run of the run benchmark (one build as both "this
// build" and -run-baseline) measured the variant that always followed the
// floor VM 1.058x slower (paired 1.020x) than the one that always followed
// `vk-applevm version`. Running a rotation backwards turns "a right after
// b" into "b right after a", so over every two rounds each variant follows
// each of its neighbours equally often.
func roundOrder(n, round int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + round/2) % n
	}
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// fmtDuration prints a duration in ms below 10 s and in s above, to a
// precision that the noise of these machines still supports.
func fmtDuration(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// fmtMiB prints bytes in MiB.
func fmtMiB(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// fmtSeries prints every sample of a series, for the log.
func fmtSeries(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond))
	}
	return "[" + strings.Join(parts, " ") + "] ms"
}
