package qemu

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm/consolelog"
)

// A guest that writes far more to its console than the cap (every
// initcall logged) leaves at most the capped live file and one previous
// one, and the live file ends with the guest's last words: the console
// pipe is drained to its end before the machine counts as stopped.
func TestConsoleLogStaysCapped(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "")
	spec.Cmdline = "initcall_debug ignore_loglevel"
	spec.ConsoleLogMaxSize = 16 << 10
	m := startVM(ctx, t, testDriver(t), spec)
	if got := readLines(ctx, t, m, "ready"); strings.Join(got, "|") != "ready" {
		t.Fatalf("agent port said %q, want ready", got)
	}
	waitDone(ctx, t, m)
	if err := m.Err(); err != nil {
		t.Fatalf("power-off ended with %v", err)
	}
	live, err := os.ReadFile(spec.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := os.ReadFile(spec.ConsoleLog + consolelog.PreviousSuffix)
	if err != nil {
		t.Fatalf("no previous console log: the guest wrote less than the cap? %v", err)
	}
	t.Logf("console: live %d bytes, previous %d bytes, cap %d", len(live), len(prev), spec.ConsoleLogMaxSize)
	if int64(len(live)) > spec.ConsoleLogMaxSize || int64(len(prev)) > spec.ConsoleLogMaxSize {
		t.Fatalf("console log over its cap: live %d, previous %d bytes, cap %d", len(live), len(prev), spec.ConsoleLogMaxSize)
	}
	if strings.Contains(string(live)+string(prev), "Linux version") {
		t.Fatal("the boot banner is still on disk: the output did not exceed two caps, nothing was bounded")
	}
	if !strings.Contains(string(live), "reboot: Power down") {
		t.Fatalf("the live console log lacks the guest's last words:\n%s", tail(live, 1500))
	}
	entries, _ := os.ReadDir(strings.TrimSuffix(spec.ConsoleLog, "/console.log"))
	if len(entries) != 2 {
		t.Fatalf("%d files next to the console log, want it and its previous", len(entries))
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
