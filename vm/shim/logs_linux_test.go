package shim

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/crilog"
)

func registerLogs(t *testing.T, v fakeVM, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := v.RegisterLog(ctxFor(t, 5*time.Second), n); err != nil {
			t.Fatal(err)
		}
	}
}

func guestLog(t *testing.T, v fakeVM, name, stream, data string) {
	t.Helper()
	if got := agentCommand(t, v.Client, fmt.Sprintf("log %s %s %s", name, stream, hex.EncodeToString([]byte(data)))); got != "ok" {
		t.Fatalf("guest log command: %q", got)
	}
}

// Frames from the guest's log port end up as CRI records in LogDir, read
// back by the node's reader; a bad name is dropped without harm.
func TestLogsPersistedFromLogPort(t *testing.T) {
	v := launchFake(t, func(c *Config) { c.LogMaxSize, c.LogMaxFiles = minLogMaxSize, 3 })
	registerLogs(t, v, "0", "init-0")
	if err := v.RegisterLog(ctxFor(t, 5*time.Second), "../escape"); err == nil {
		t.Fatal("the shim registered a name with a path in it")
	}
	before := time.Now()
	guestLog(t, v, "0", "stdout", "line one\nline two\npart")
	guestLog(t, v, "0", "stdout", "ial line\n")
	guestLog(t, v, "0", "stderr", "an error\n")
	guestLog(t, v, "init-0", "stdout", "init says hi\n")
	guestLog(t, v, "../escape", "stdout", "must not land\n")
	want := "line one\nline two\npartial line\nan error\n"
	eventually(t, 10*time.Second, "records on disk", func() bool {
		b, _ := os.ReadFile(filepath.Join(v.logDir, "0.log"))
		return strings.Count(string(b), "\n") >= 4 &&
			strings.HasSuffix(readFileString(t, filepath.Join(v.logDir, "init-0.log")), "\n")
	})
	if got := readLog(t, v.logDir, "0"); got != want {
		t.Fatalf("0.log reads %q, want %q", got, want)
	}
	if got := readLog(t, v.logDir, "init-0"); got != "init says hi\n" {
		t.Fatalf("init-0.log reads %q", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(readFileString(t, filepath.Join(v.logDir, "0.log"))), "\n") {
		r, err := crilog.Parse([]byte(line))
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		if r.Time.Before(before.Add(-time.Second)) || r.Time.After(time.Now()) {
			t.Fatalf("record %q not timestamped on arrival", line)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(v.logDir))
	for _, e := range entries {
		if strings.Contains(e.Name(), "escape") {
			t.Fatalf("bad log name escaped the log dir: %s", e.Name())
		}
	}
	waitShimLog(t, v.dir, "did not register")

	// Enough output to rotate several times; only LogMaxFiles files stay.
	chunk := strings.Repeat("z", 1000) + "\n"
	for range 100 {
		guestLog(t, v, "0", "stdout", chunk)
	}
	eventually(t, 10*time.Second, "rotation", func() bool {
		segs, _ := crilog.Segments(v.logDir, "0")
		return len(segs) == 3 && strings.HasSuffix(readFileString(t, filepath.Join(v.logDir, "0.log")), "z\n")
	})
	if err := v.Stop(ctxFor(t, 20*time.Second), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	segs, err := crilog.Segments(v.logDir, "0")
	if err != nil || len(segs) != 3 {
		t.Fatalf("segments after stop: %v, %v; want 3", segs, err)
	}
	got := readLog(t, v.logDir, "0")
	if strings.Contains(got, "line one") || !strings.HasSuffix(got, chunk+chunk) {
		t.Fatalf("after rotation the log should hold only the newest output (%d bytes)", len(got))
	}
}

// WaitLog answers once the guest has ended a log and its records, the open
// last line included, are on disk; and for any log once the machine has
// stopped.
func TestWaitLog(t *testing.T) {
	v := launchFake(t, nil)
	registerLogs(t, v, "0")
	guestLog(t, v, "0", "stdout", "first\nno newline yet")
	waited := make(chan error, 1)
	go func() {
		st, err := v.WaitLog(ctxFor(t, 30*time.Second), "0")
		if err == nil && (!st.Complete || st.PortClosed) {
			err = fmt.Errorf("status %+v, want complete", st)
		}
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("WaitLog returned (%v) before the log ended", err)
	case <-time.After(100 * time.Millisecond):
	}
	guestLog(t, v, "0", "end", "")
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	// No wait for the partial-line flush: it is on disk already.
	if got := readLog(t, v.logDir, "0"); got != "first\nno newline yet\n" {
		t.Fatalf("log reads %q when WaitLog returns", got)
	}
	if _, err := v.WaitLog(ctxFor(t, 5*time.Second), "../x"); err == nil {
		t.Fatal("WaitLog accepted an invalid name")
	}
	if err := v.Stop(ctxFor(t, 20*time.Second), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := v.WaitLog(ctxFor(t, 5*time.Second), "1")
	if err != nil || !st.PortClosed {
		t.Fatalf("after the stop: %+v %v, want the port closed", st, err)
	}
}

// A guest that invents log names gets no file and no descriptor for any of
// them: 1000 invented names leave only the registered log in LogDir and
// the shim's open descriptors where they were, and shim.log says so in a
// few lines, not a thousand.
func TestInventedLogNamesRefused(t *testing.T) {
	v := launchFake(t, nil)
	registerLogs(t, v, "0")
	guestLog(t, v, "0", "stdout", "registered\n")
	eventually(t, 10*time.Second, "the registered log on disk", func() bool {
		return strings.HasSuffix(readFileString(t, filepath.Join(v.logDir, "0.log")), "registered\n")
	})
	st, err := v.State(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fdsBefore := openFDs(t, st.ShimPid)
	for i := range 1000 {
		guestLog(t, v, fmt.Sprintf("invented-%d", i), "stdout", "spam\n")
	}
	guestLog(t, v, "0", "stdout", "still here\n")
	eventually(t, 10*time.Second, "the registered log's later line", func() bool {
		return strings.HasSuffix(readFileString(t, filepath.Join(v.logDir, "0.log")), "still here\n")
	})
	entries, err := os.ReadDir(v.logDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "0.log" {
		t.Fatalf("LogDir holds %d files (%v…), want only the registered 0.log", len(names), names[:min(len(names), 5)])
	}
	// The test's last connections to agent.sock close asynchronously.
	fdsAfter := openFDs(t, st.ShimPid)
	for deadline := time.Now().Add(5 * time.Second); fdsAfter > fdsBefore && time.Now().Before(deadline); fdsAfter = openFDs(t, st.ShimPid) {
		time.Sleep(20 * time.Millisecond)
	}
	if fdsAfter > fdsBefore {
		t.Fatalf("the shim holds %d descriptors after 1000 invented names, %d before", fdsAfter, fdsBefore)
	}
	t.Logf("shim descriptors: %d before, %d after 1000 invented names", fdsBefore, fdsAfter)
	waitShimLog(t, v.dir, "refusedFrames=1000")
	if n := strings.Count(readFileString(t, filepath.Join(v.dir, logFile)), "did not register"); n > 4 {
		t.Fatalf("shim.log has %d refusal lines for 1000 frames, want at most 4 (1st, 10th, 100th, 1000th)", n)
	}
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
