package shim

import (
	"syscall"
	"testing"
	"time"
)

func TestForceStopWhenGuestIgnoresShutdown(t *testing.T) {
	v := launchFake(t, nil, envIgnoreStop+"=1")
	begin := time.Now()
	if err := v.Stop(ctxFor(t, 20*time.Second), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st, err := v.Wait(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusStopped || st.Error != "killed" {
		t.Fatalf("final state %+v, want killed", st)
	}
	if elapsed := time.Since(begin); elapsed < 300*time.Millisecond {
		t.Fatalf("killed after %v, before the grace period ended", elapsed)
	}
	waitShimLog(t, v.dir, "grace period over")
}

func TestKill(t *testing.T) {
	v := launchFake(t, nil, envIgnoreStop+"=1")
	st, _ := v.State(ctxFor(t, 5*time.Second))
	if err := v.Kill(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	final, err := v.Wait(ctxFor(t, 5*time.Second))
	if err != nil || final.Error != "killed" {
		t.Fatalf("after Kill: %+v, %v", final, err)
	}
	eventually(t, 5*time.Second, "hypervisor gone after Kill", func() bool {
		return !isProcess(st.HypervisorPid, st.HypervisorStartTime)
	})
}

func TestStopWithoutAgentUsesRequestStop(t *testing.T) {
	v := launchFake(t, nil, envNoAgentShutdown+"=1")
	if err := v.Stop(ctxFor(t, 20*time.Second), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := v.Wait(ctxFor(t, 5*time.Second))
	if err != nil || st.Error != "" {
		t.Fatalf("final state %+v, %v; want a clean power-off", st, err)
	}
	waitShimLog(t, v.dir, "asking the hypervisor to power the guest off")
}

func TestGuestPowerOff(t *testing.T) {
	v := launchFake(t, nil)
	waited := make(chan State, 1)
	go func() {
		st, _ := v.Wait(ctxFor(t, 20*time.Second))
		waited <- st
	}()
	if got := agentCommand(t, v.Client, "poweroff"); got != "ok" {
		t.Fatalf("poweroff reply %q", got)
	}
	st := <-waited
	if st.Status != StatusStopped || st.Error != "" {
		t.Fatalf("Wait after guest power-off = %+v", st)
	}
}

func TestSignals(t *testing.T) {
	v := launchFake(t, nil)
	st, _ := v.State(ctxFor(t, 5*time.Second))
	if err := syscall.Kill(st.ShimPid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := agentCommand(t, v.Client, "session"); got == "" {
		t.Fatal("no reply after SIGHUP")
	}
	if now, err := v.State(ctxFor(t, 5*time.Second)); err != nil || now.Status != StatusRunning {
		t.Fatalf("after SIGHUP: %+v, %v; want still running", now, err)
	}
	if err := syscall.Kill(st.ShimPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	final, err := v.Wait(ctxFor(t, 20*time.Second))
	if err != nil || final.Status != StatusStopped || final.Error != "" {
		t.Fatalf("after SIGTERM: %+v, %v; want a graceful stop", final, err)
	}
}
