package vmtest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/vm"
)

// pauseFor is how long the VM is stopped, as a Mac's sleep stops a vz guest.
const pauseFor = 30 * time.Second

// TestGuestClockRecoversAfterPauseOnQEMU stops the VM's CPUs with QMP for
// 30 s, resumes them, and expects the guest's wall clock back within 1 s of
// the host's by a deadline, set by the agent from the RTC (which QEMU keeps
// on host time while the guest is stopped, as vz's PL031 does).
func TestGuestClockRecoversAfterPauseOnQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*bootTimeout+pauseFor)
	defer cancel()
	m, console := startDirect(ctx, t, true)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		t.Fatal(err)
	}
	h := transport.Serve(port, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	defer h.Close()
	ac, err := client.Dial(ctx, h.Open)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := ac.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v\nconsole:\n%s", err, console())
	}
	// As the container package does: Setup gives the guest the host's
	// time, and the agent measures its RTC's phase against it.
	if _, err := ac.Setup(ctx, &api.SetupRequest{TimeUnixNs: time.Now().UnixNano()}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	if _, err := ac.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "c", RootfsDisk: vm.DiskRootfs, ScratchDisk: vm.DiskScratch}); err != nil {
		t.Fatalf("create container: %v\nconsole:\n%s", err, console())
	}
	// guestOffset bounds the guest clock's offset from the host's by the
	// host times around reading it.
	guestOffset := func() (lo, hi time.Duration) {
		t.Helper()
		var out, errb strings.Builder
		before := time.Now()
		// busybox's date has no %N; a file's modification time, which
		// the kernel takes from the wall clock, has nanoseconds.
		st, err := ac.Exec(ctx, client.ExecOptions{ContainerID: "c", ProcessID: randomID(),
			Args: []string{"sh", "-c", "f=/tmp/now.$$; touch $f && stat -c %y $f && rm $f"}, Stdout: &out, Stderr: &errb})
		after := time.Now()
		if err != nil || st.GetExitCode() != 0 {
			t.Fatalf("date in the guest: %v %v %s", err, st, errb.String())
		}
		g, err := time.Parse("2006-01-02 15:04:05.999999999 -0700", strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("guest time %q: %v", out.String(), err)
		}
		return g.Sub(after), g.Sub(before)
	}
	waitFor(t, 30*time.Second, "the agent measures the RTC's phase (console)", func() bool {
		return strings.Contains(console(), "RTC phase measured")
	})
	lo, hi := guestOffset()
	t.Logf("before the pause: guest clock off by [%v, %v]", lo.Round(time.Millisecond), hi.Round(time.Millisecond))

	pm, ok := m.(interface {
		Pause(context.Context) error
		Resume(context.Context) error
	})
	if !ok {
		t.Fatalf("the QEMU machine %T cannot pause", m)
	}
	if err := pm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pauseFor)
	if err := pm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// The end state, by a deadline: within 1 s of the host's clock.
	deadline := resumed.Add(30 * time.Second)
	for {
		lo, hi := guestOffset()
		if lo > -time.Second && hi < time.Second {
			t.Logf("%v after resuming: guest clock off by [%v, %v]", time.Since(resumed).Round(time.Millisecond),
				lo.Round(time.Millisecond), hi.Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest clock still off by [%v, %v] 30 s after resuming; console:\n%s", lo, hi, console())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The agent is what set it: it logs the step it made, after making it,
	// and the console reaches its file through the emulated serial port a
	// moment later.
	waitFor(t, 30*time.Second, "the agent's clock step on the console", func() bool {
		return strings.Contains(console(), "clock set from the RTC")
	})
	for _, line := range strings.Split(console(), "\n") {
		if strings.Contains(line, "clock set") || strings.Contains(line, "RTC") {
			t.Log("console: " + line)
		}
	}
}
