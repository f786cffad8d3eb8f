package vmtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent"
)

// BenchmarkAgentReadyPowerButton measures what opening the power button
// before serving costs the agent's readiness: the default (button and
// evdev modules loaded right after the console port's, boot waits for the
// button) against vkav.powerbutton=async (module list order unchanged,
// button opened whenever it appears). Variants boot in turn each round;
// reported per variant: median guest uptime when the agent started
// serving (InfoResponse.ready_uptime_ns), median host wall time from
// shim.Launch to a ready agent, and both as ratios to async:
//
//	go test -run '^$' -bench AgentReadyPowerButton -benchtime 5x ./agent/vmtest/
func BenchmarkAgentReadyPowerButton(b *testing.B) {
	buildFixtures(b)
	variants := []struct{ name, cmdline string }{
		{"async", agent.PowerButtonAsyncParam + "=async"},
		{"before-ready", ""},
	}
	guest := make([][]time.Duration, len(variants))
	host := make([][]time.Duration, len(variants))
	for b.Loop() {
		for i, v := range variants {
			vm := bootVM(b, vmOptions{cmdline: v.cmdline})
			guest[i] = append(guest[i], time.Duration(vm.ready.GetReadyUptimeNs()))
			host[i] = append(host[i], vm.booted)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := vm.shim.Delete(ctx); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	}
	guest0, host0 := median(guest[0]), median(host[0])
	for i, v := range variants {
		g, h := median(guest[i]), median(host[i])
		b.ReportMetric(float64(g.Milliseconds()), v.name+"-guest-ready-ms")
		b.ReportMetric(float64(g)/float64(guest0), v.name+"-guest-ready/async")
		b.ReportMetric(float64(h.Milliseconds()), v.name+"-host-ready-ms")
		b.ReportMetric(float64(h)/float64(host0), v.name+"-host-ready/async")
		b.Logf("%-12s guest uptime at ready median %v %v; Launch to ready median %v %v", v.name, g, guest[i], h, host[i])
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
