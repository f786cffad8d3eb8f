package hostinfo

import "testing"

func TestDiskUsedPercentAsDf(t *testing.T) {
	for _, c := range []struct {
		d    Disk
		want int
	}{
		{Disk{}, 0},
		{Disk{UsedBytes: 0, FreeBytes: 100}, 0},
		{Disk{UsedBytes: 85, FreeBytes: 15}, 85},
		// df rounds up: 1 byte used of 1000 shows as 1 %.
		{Disk{UsedBytes: 1, FreeBytes: 999}, 1},
		// Blocks reserved for root count as neither used nor available.
		{Disk{TotalBytes: 1000, UsedBytes: 800, FreeBytes: 150}, 85},
		{Disk{UsedBytes: 100, FreeBytes: 0}, 100},
	} {
		if got := c.d.UsedPercent(); got != c.want {
			t.Errorf("%+v.UsedPercent() = %d, want %d", c.d, got, c.want)
		}
	}
}
