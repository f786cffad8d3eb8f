package vmtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// TestFreedGuestMemoryGoesBackToTheHost: with QEMU's virtio-balloon
// (free-page-reporting=on) and the guest's virtio_balloon, memory a
// container allocated and freed leaves QEMU's resident memory. Without
// reporting it stays: the guest keeps freed pages in its free lists, and
// QEMU cannot tell them from used ones (make bench measures both).
func TestFreedGuestMemoryGoesBackToTheHost(t *testing.T) {
	v := bootVM(t, vmOptions{})
	v.createContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// CreateContainer waits only for the modules it needs (disks,
	// overlay); the rest, virtio_balloon among them, load beside it.
	waitFor(t, time.Minute, "virtio_balloon among the guest's loaded modules", func() bool {
		info, err := v.agent.Info(ctx, &api.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(info.GetModules(), "virtio_balloon")
	})
	st, err := v.shim.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := st.HypervisorPid
	idle := settledRSS(t, pid)

	const allocMiB = 128 // of the VM's 256
	done := make(chan struct{})
	peak := idle
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			r, err := readRSS(pid)
			if err != nil {
				return // the test's own reads report it
			}
			peak = max(peak, r)
			if r > idle+allocMiB<<20*3/4 {
				return
			}
		}
	}()
	v.mustSh(t, fmt.Sprintf("dd if=/dev/zero of=/dev/null bs=%dM count=1 2>/dev/null", allocMiB))
	<-done
	if peak < idle+allocMiB<<20*3/4 {
		t.Fatalf("QEMU's RSS peaked at %d MiB over an idle %d MiB: the guest did not touch %d MiB", peak>>20, idle>>20, allocMiB)
	}
	var now uint64
	waitFor(t, time.Minute, fmt.Sprintf("QEMU's RSS back within 32 MiB of idle (%d MiB) after freeing %d MiB", idle>>20, allocMiB), func() bool {
		now = rss(t, pid)
		return now <= idle+32<<20
	})
	t.Logf("QEMU RSS: idle %d MiB, peak %d MiB, after %d MiB", idle>>20, peak>>20, now>>20)
}

func rss(t testing.TB, pid int) uint64 {
	t.Helper()
	r, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// settledRSS waits until what boot freed has been reported, which the
// guest does 2 s after pages are freed and later on a loaded machine, and
// returns QEMU's resident memory then: settled when it has moved less than
// 2 MiB for 3 s. Measured earlier, "idle" still holds freed pages the
// guest may reuse for the test's allocation without QEMU's RSS growing.
func settledRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	const window, every, slack = 3 * time.Second, 250 * time.Millisecond, 2 << 20
	var samples []uint64
	deadline := time.Now().Add(time.Minute)
	for {
		samples = append(samples, rss(t, pid))
		if n := int(window / every); len(samples) > n {
			samples = samples[len(samples)-n-1:]
			if slices.Max(samples)-slices.Min(samples) < slack {
				return samples[len(samples)-1]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's RSS still moving after a minute: last %d samples %v", len(samples), samples)
		}
		time.Sleep(every)
	}
}

// readRSS is a process's resident memory in bytes (/proc/<pid>/status
// VmRSS).
func readRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
