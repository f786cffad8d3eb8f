package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// TestRequestStopReachesTheAgentAsPowerButton: with the agent's Shutdown
// RPC left out of the shim's stop, Machine.RequestStop (QEMU's ACPI
// system_powerdown) is all that asks the guest to stop. The agent must
// take the press as its graceful shutdown: SIGTERM reaches the container's
// process, then it powers off, well within the grace period.
func TestRequestStopReachesTheAgentAsPowerButton(t *testing.T) {
	v := bootVM(t, vmOptions{noAgentShutdown: true})
	// A press before the button is open would be lost, and nothing but
	// the agent's console line says it is: a container does not wait for
	// the button's module (Server.waitModules), which under TCG on a
	// loaded host can load well after the container exists, and the
	// console trails the agent by the serial port's speed. So the press
	// waits for the line, bounded like a boot.
	v.createContainer(t)
	waitFor(t, bootTimeout, "the agent watching the power button (console)", func() bool {
		return strings.Contains(v.console(t), "watching power button")
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	const script = `trap 'echo got-TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done`
	if err := v.shim.RegisterLog(ctx, "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.agent.CreateProcess(ctx, &api.CreateProcessRequest{
		ContainerId: "c", ProcessId: "main", Args: []string{"sh", "-c", script}, LogName: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.agent.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "c", ProcessId: "main"}); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(v.logDir, "0.log")
	waitFor(t, 30*time.Second, "the container's output reaches "+logFile, func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "started")
	})

	const grace = 30 * time.Second
	begin := time.Now()
	if err := v.shim.Stop(ctx, grace); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	final, err := v.shim.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shimLog, _ := os.ReadFile(filepath.Join(v.dir, "shim.log"))
	console := v.console(t)
	t.Logf("stop by power button took %v", took.Round(time.Millisecond))
	for _, line := range strings.Split(console, "\n") {
		if strings.Contains(line, "power") || strings.Contains(line, "agent serving") {
			t.Log("console: " + line)
		}
	}
	if !strings.Contains(string(shimLog), "asking the hypervisor to power the guest off") ||
		strings.Contains(string(shimLog), "guest agent is shutting down") {
		t.Fatalf("the stop did not go through RequestStop alone; shim.log:\n%s", shimLog)
	}
	if final.Error != "" || took >= grace || strings.Contains(string(shimLog), "grace period over") {
		t.Fatalf("stop took %v (grace %v), final state %+v; the guest did not power off by itself:\n%s\nconsole:\n%s",
			took, grace, final, shimLog, console)
	}
	for _, want := range []string{"power button pressed: shutting down", "powering off"} {
		if !strings.Contains(console, want) {
			t.Fatalf("console lacks the agent's %q:\n%s", want, console)
		}
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "got-TERM") {
		t.Fatalf("the container's process did not get SIGTERM; its log:\n%s\nconsole:\n%s", b, console)
	}
}

func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
