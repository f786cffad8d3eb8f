package ext4

import (
	"errors"
	"slices"
	"sort"
)

// ErrNoSpace is returned when a fixed-size filesystem (Options.Size) cannot
// hold what was written to it, or an image would pass 16 TiB.
var ErrNoSpace = errors.New("ext4: no space left in filesystem")

// span is a run of contiguous blocks.
type span struct{ start, len uint64 }

func (s span) end() uint64 { return s.start + s.len }

// allocator hands out blocks in ascending order, stepping over the
// superblock and group descriptor copies that sparse_super puts at the start
// of groups 0, 1 and powers of 3, 5 and 7. Blocks given back are reused
// first, so replaced files leave no holes behind.
type allocator struct {
	gdtReserve uint64 // blocks kept after each superblock copy for the descriptor table
	next       uint64 // lowest block never handed out
	limit      uint64 // size of a fixed-size filesystem; 0 when the image grows
	free       []span // given back, ascending and coalesced
}

func newAllocator(gdtReserve, limit uint64) allocator {
	return allocator{gdtReserve: gdtReserve, next: 1 + gdtReserve, limit: limit}
}

func (a *allocator) clone() allocator {
	c := *a
	c.free = slices.Clone(a.free)
	return c
}

// reserved is the superblock + descriptor region of group g (only groups
// with a superblock copy have one).
func (a *allocator) reserved(g uint64) span {
	return span{g * blocksPerGroup, 1 + a.gdtReserve}
}

// skipReserved moves b past the superblock region it falls in, if any.
func (a *allocator) skipReserved(b uint64) uint64 {
	g := b / blocksPerGroup
	if hasSuper(g) {
		if r := a.reserved(g); b < r.end() {
			return r.end()
		}
	}
	return b
}

// nextReserved returns the first block of the next superblock region after b.
func nextReserved(b uint64) uint64 {
	g := b / blocksPerGroup
	i := sort.Search(len(superGroups), func(i int) bool { return superGroups[i] > g })
	if i == len(superGroups) {
		return maxBlocks
	}
	return superGroups[i] * blocksPerGroup
}

// alloc returns up to n blocks in one run; with contiguous set, exactly n.
func (a *allocator) alloc(n uint64, contiguous bool) (span, error) {
	for i, f := range a.free {
		if contiguous && f.len < n {
			continue
		}
		got := min(n, f.len)
		if got == f.len {
			a.free = slices.Delete(a.free, i, i+1)
		} else {
			a.free[i] = span{f.start + got, f.len - got}
		}
		return span{f.start, got}, nil
	}
	for {
		b := a.skipReserved(a.next)
		end := nextReserved(b)
		if a.limit > 0 && end > a.limit {
			end = a.limit
		}
		if end <= b {
			return span{}, ErrNoSpace
		}
		room := end - b
		if contiguous && room < n {
			if end == a.limit || end == maxBlocks {
				return span{}, ErrNoSpace
			}
			// The gap before the next superblock copy stays usable
			// for smaller requests.
			a.next = a.skipReserved(end)
			a.release(span{b, room})
			continue
		}
		got := min(n, room)
		a.next = b + got
		return span{b, got}, nil
	}
}

// release gives blocks back for reuse.
func (a *allocator) release(s span) {
	if s.len == 0 {
		return
	}
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].start > s.start })
	a.free = slices.Insert(a.free, i, s)
	// Coalesce with the following and the preceding span.
	if i+1 < len(a.free) && a.free[i].end() == a.free[i+1].start {
		a.free[i].len += a.free[i+1].len
		a.free = slices.Delete(a.free, i+1, i+2)
	}
	if i > 0 && a.free[i-1].end() == a.free[i].start {
		a.free[i-1].len += a.free[i].len
		a.free = slices.Delete(a.free, i, i+1)
		i--
	}
	// A free run at the very end shrinks the used area instead.
	if last := len(a.free) - 1; last >= 0 && a.free[last].end() == a.next {
		a.next = a.free[last].start
		a.free = a.free[:last]
	}
}
