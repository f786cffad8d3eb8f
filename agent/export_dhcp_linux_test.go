package agent

import (
	"testing"
	"time"
)

// SetDHCPAfter replaces how lease keepers wait for T1 and retries until
// the test ends, so a test can trigger a renewal without waiting it out.
func SetDHCPAfter(t testing.TB, after func(time.Duration) <-chan time.Time) {
	old := dhcpAfter
	dhcpAfter = after
	t.Cleanup(func() { dhcpAfter = old })
}
