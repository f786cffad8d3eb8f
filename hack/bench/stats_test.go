package main

import (
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5 * ms}, 5 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms}, 3 * ms}, // upper middle
	} {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
}

func TestRatios(t *testing.T) {
	if r := ratio(3*time.Second, 2*time.Second); r != 1.5 {
		t.Errorf("ratio = %v, want 1.5", r)
	}
	if r := ratio[uint64](5, 0); r != 0 {
		t.Errorf("ratio over zero = %v, want 0 (nothing measured)", r)
	}
	got := pairedRatios([]time.Duration{2, 9, 4}, []time.Duration{1, 3, 0})
	if !slices.Equal(got, []float64{2, 3}) {
		t.Errorf("pairedRatios = %v, want [2 3] (a zero denominator is left out)", got)
	}
}

func TestRoundOrderRotates(t *testing.T) {
	seenFirst := map[int]bool{}
	for round := range 6 {
		order := roundOrder(3, round)
		sorted := slices.Clone(order)
		slices.Sort(sorted)
		if !slices.Equal(sorted, []int{0, 1, 2}) {
			t.Fatalf("round %d: order %v is not a permutation", round, order)
		}
		seenFirst[order[0]] = true
	}
	if len(seenFirst) != 3 {
		t.Fatalf("over 6 rounds, %d of 3 variants ran first", len(seenFirst))
	}
	if len(roundOrder(0, 4)) != 0 {
		t.Fatal("no variants, yet an order")
	}
}

// No variant may always run right after the same one: over 2n rounds,
// "a right after b" happens as often as "b right after a" within rounds
// (the run benchmark's two builds follow the floor VM equally often).
func TestRoundOrderBalancesPredecessors(t *testing.T) {
	for _, n := range []int{2, 3, 4, 5} {
		after := map[[2]int]int{} // {a, b}: a ran right after b
		for round := range 2 * n {
			order := roundOrder(n, round)
			for i := 1; i < len(order); i++ {
				after[[2]int{order[i], order[i-1]}]++
			}
		}
		for k, c := range after {
			if back := after[[2]int{k[1], k[0]}]; c != back {
				t.Errorf("n=%d: %d ran right after %d %d times, the reverse %d times", n, k[0], k[1], c, back)
			}
		}
		if n == 4 && after[[2]int{1, 0}] != after[[2]int{3, 0}] {
			t.Errorf("n=4: variant 1 followed variant 0 %d times, variant 3 %d times", after[[2]int{1, 0}], after[[2]int{3, 0}])
		}
	}
}
