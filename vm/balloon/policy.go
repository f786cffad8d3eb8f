// Package balloon drives a traditional memory balloon from the free memory
// the guest agent reports, for backends without free page reporting (vz:
// Virtualization.framework offers only VZVirtioTraditionalMemoryBalloonDevice
// and its target size). Under QEMU the guest reports its free pages itself
// (vm/qemu's virtio-balloon with free-page-reporting=on) and nothing here
// runs.
//
// The policy is plain arithmetic on samples, so it is tested with fakes on
// every platform; the loop (Run) reads samples and sets targets through
// functions the shim supplies. docs/decisions.md ("Guest memory goes back
// to the host") has the evidence and the limits.
package balloon

import "fmt"

// Sample is the guest's memory as its agent reports it (agent Stats:
// /proc/meminfo's MemTotal and MemAvailable).
type Sample struct {
	TotalBytes     uint64
	AvailableBytes uint64
}

// Defaults of Policy.
const (
	// DefaultHeadroom is the free memory the guest keeps above what it
	// uses: what a burst of allocation may take before the next sample
	// lets the balloon out (a container's start, an exec, a page cache
	// refill), and what keeps the guest kernel's watermarks satisfied.
	DefaultHeadroom = 64 << 20
	// DefaultStep is the hysteresis band: the balloon takes memory only
	// when the guest has at least this much more free than its headroom.
	DefaultStep = 32 << 20
	// DefaultShrinkAfter is how many consecutive samples must agree
	// before the balloon takes memory; giving memory back is immediate.
	DefaultShrinkAfter = 3
)

// granule is the unit of targets: vz takes the target in bytes but the
// balloon moves whole pages, and MiB keeps targets readable in logs.
const granule = 1 << 20

// Policy bounds the target the controller sets.
type Policy struct {
	// MemoryBytes is the guest's configured memory, the VM's size: the
	// largest target (an empty balloon).
	MemoryBytes uint64
	// FloorBytes is the smallest target: the container's memory request
	// plus the runtime's per-VM overhead. What the scheduler reserved for
	// the pod is never taken back.
	FloorBytes uint64
	// Headroom, Step and ShrinkAfter default to DefaultHeadroom,
	// DefaultStep and DefaultShrinkAfter.
	Headroom    uint64
	Step        uint64
	ShrinkAfter int
}

func (p *Policy) setDefaults() {
	if p.Headroom == 0 {
		p.Headroom = DefaultHeadroom
	}
	if p.Step == 0 {
		p.Step = DefaultStep
	}
	if p.ShrinkAfter <= 0 {
		p.ShrinkAfter = DefaultShrinkAfter
	}
}

// Controller turns samples into balloon targets. It is not safe for
// concurrent use; Run owns it.
type Controller struct {
	p      Policy
	target uint64
	// wantLess counts consecutive samples that asked for a smaller target.
	wantLess int
}

// NewController starts with an empty balloon: the target is the whole of
// p.MemoryBytes, what the machine booted with.
func NewController(p Policy) (*Controller, error) {
	p.setDefaults()
	if p.MemoryBytes == 0 {
		return nil, fmt.Errorf("balloon policy: the guest's memory size is zero")
	}
	p.FloorBytes = min(roundUp(p.FloorBytes), p.MemoryBytes)
	return &Controller{p: p, target: p.MemoryBytes}, nil
}

// Target is the target the machine has (MemoryBytes until Applied says
// otherwise).
func (c *Controller) Target() uint64 { return c.target }

// Applied records that the machine's balloon now has target: Next reasons
// from the target the guest really has, so a SetTarget that failed is not
// taken for done.
func (c *Controller) Applied(target uint64) { c.target = target }

// Next returns the target for the guest's state in s and whether it differs
// from the current one; the caller sets it and calls Applied.
//
// The guest is using used = MemTotal - MemAvailable; it should have
// Headroom free above that. When its free memory inside the target falls
// below half the headroom, the balloon empties at once: a guest under
// pressure must not wait for the next samples (its use is capped by the
// target, so a sample cannot say how much more it wants), and an empty
// balloon costs the host nothing until the guest touches the pages. When
// it has more than Headroom + Step free for ShrinkAfter samples in a row,
// the target falls to used + Headroom. In between nothing changes, so a
// guest whose use wobbles does not make the balloon pump. Targets stay
// within [FloorBytes, MemoryBytes].
func (c *Controller) Next(s Sample) (uint64, bool) {
	used := c.used(s)
	var free uint64
	if c.target > used {
		free = c.target - used
	}
	switch {
	case free < c.p.Headroom/2 && c.target < c.p.MemoryBytes:
		c.wantLess = 0
		return c.p.MemoryBytes, true
	case free > c.p.Headroom+c.p.Step:
		want := min(max(roundUp(used+c.p.Headroom), c.p.FloorBytes), c.p.MemoryBytes)
		if want >= c.target {
			c.wantLess = 0
			return c.target, false
		}
		c.wantLess++
		if c.wantLess < c.p.ShrinkAfter {
			return c.target, false
		}
		c.wantLess = 0
		return want, true
	default:
		c.wantLess = 0
		return c.target, false
	}
}

// used is the guest's memory in use, balloon excluded. Linux's
// virtio_balloon takes inflated pages out of MemTotal unless the device
// offers deflate-on-OOM, in which case they stay in MemTotal as allocated
// memory. A MemTotal nearer the configured size than the target means the
// latter: the balloon's pages are then subtracted from the guest's use.
func (c *Controller) used(s Sample) uint64 {
	if s.AvailableBytes >= s.TotalBytes {
		return 0
	}
	used := s.TotalBytes - s.AvailableBytes
	balloon := c.p.MemoryBytes - c.target
	if balloon > 0 && s.TotalBytes > c.p.MemoryBytes-balloon/2 {
		used -= min(used, balloon)
	}
	return used
}

func roundUp(n uint64) uint64 { return (n + granule - 1) / granule * granule }
