package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
)

// GCPolicy is the kubelet's image garbage collection: when the disk
// holding the store is more than HighPercent full, images no container
// uses are removed, least recently used first, until it is below
// LowPercent.
type GCPolicy struct {
	HighPercent, LowPercent int
}

// DefaultGCPolicy is the kubelet's defaults (imageGCHighThresholdPercent,
// imageGCLowThresholdPercent).
var DefaultGCPolicy = GCPolicy{HighPercent: 85, LowPercent: 80}

// GCReport says what a collection did.
type GCReport struct {
	// UsedPercent before and after.
	Before, After int
	// Removed lists the refs removed, oldest use first.
	Removed []string
	// BytesFreed counts blobs and root filesystems deleted.
	BytesFreed int64
}

// diskUsedPercent is how full the filesystem holding dir is, as df shows it.
func diskUsedPercent(dir string) (int, error) {
	d, err := hostinfo.ReadDisk(dir)
	if err != nil {
		return 0, fmt.Errorf("disk usage of the image store: %w", err)
	}
	return d.UsedPercent(), nil
}

// lastUsed is when img last started a container (its root filesystem's
// modification time, which Rootfs touches) or else when it was pulled.
func (s *Store) lastUsed(img *Image) time.Time {
	if h, err := sha256Hash(img.Digest); err == nil {
		if fi, err := os.Stat(filepath.Join(s.rootfsDir(), h.Hex+".ext4")); err == nil && fi.ModTime().After(img.Pulled) {
			return fi.ModTime()
		}
	}
	return img.Pulled
}

// GC frees disk space under policy: it does nothing below HighPercent;
// above it prunes unreferenced content, then removes the refs of images
// inUse does not claim (manifest digests, as Prune), least recently used
// first, pruning after each, until usage is below LowPercent or nothing is
// left to remove. An image a container uses is never removed.
func (s *Store) GC(ctx context.Context, policy GCPolicy, inUse func(digest string) bool) (GCReport, error) {
	var report GCReport
	if inUse == nil {
		inUse = func(string) bool { return false }
	}
	used, err := diskUsedPercent(s.dir)
	if err != nil {
		return report, err
	}
	report.Before, report.After = used, used
	if used < policy.HighPercent {
		return report, nil
	}
	prune := func() error {
		r, err := s.Prune(ctx, inUse)
		report.BytesFreed += r.BytesFreed
		if err != nil {
			return err
		}
		report.After, err = diskUsedPercent(s.dir)
		return err
	}
	if err := prune(); err != nil {
		return report, fmt.Errorf("image gc: %w", err)
	}
	imgs, err := s.List(ctx)
	if err != nil {
		return report, fmt.Errorf("image gc: %w", err)
	}
	type candidate struct {
		img  *Image
		used time.Time
	}
	var cands []candidate
	for _, img := range imgs {
		if !inUse(img.Digest) {
			cands = append(cands, candidate{img, s.lastUsed(img)})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].used.Before(cands[j].used) })
	for _, c := range cands {
		if report.After < policy.LowPercent || ctx.Err() != nil {
			break
		}
		if err := s.Remove(ctx, c.img.Ref); err != nil {
			return report, fmt.Errorf("image gc: %w", err)
		}
		report.Removed = append(report.Removed, c.img.Ref)
		if err := prune(); err != nil {
			return report, fmt.Errorf("image gc: %w", err)
		}
	}
	s.log.InfoContext(ctx, "image garbage collection", "usedBefore", report.Before, "usedAfter", report.After,
		"removed", report.Removed, "bytesFreed", report.BytesFreed)
	return report, nil
}
