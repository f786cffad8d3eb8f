package agent_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
)

// fakeInput lays out /sys/class/input/<event> the way the kernel does
// (device/capabilities/{ev,key}, device/name, dev) under sysDir.
func fakeInput(t *testing.T, sysDir, event, name, ev, key, dev string) {
	t.Helper()
	caps := filepath.Join(sysDir, event, "device", "capabilities")
	if err := os.MkdirAll(caps, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		filepath.Join(caps, "ev"): ev + "\n", filepath.Join(caps, "key"): key + "\n",
		filepath.Join(sysDir, event, "device", "name"): name + "\n", filepath.Join(sysDir, event, "dev"): dev + "\n",
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// powerPress is one KEY_POWER press as struct input_event (64-bit).
func powerPress() []byte {
	b := make([]byte, 24)
	binary.NativeEndian.PutUint16(b[16:], 1)   // EV_KEY
	binary.NativeEndian.PutUint16(b[18:], 116) // KEY_POWER
	binary.NativeEndian.PutUint32(b[20:], 1)   // pressed
	return b
}

// TestWatchPowerButtonFindsTheButtonNotTheKeyboard: the keyboard also
// declares KEY_POWER and must be left alone; the button's node delivers
// a press.
func TestWatchPowerButtonFindsTheButtonNotTheKeyboard(t *testing.T) {
	sysDir, devDir := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(devDir, "input"), 0o755)
	// Each node holds a press, as if it had been pressed.
	for _, ev := range []string{"event0", "event1"} {
		if err := os.WriteFile(filepath.Join(devDir, "input", ev), powerPress(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fakeInput(t, sysDir, "event0", "AT Translated Set 2 keyboard", "120013",
		"402000002 3803078f800d001 feffffdfffefffff fffffffffffffffe", "13:64")
	modulesDone := make(chan struct{})
	close(modulesDone)
	// Wait reports false only once the search (with its final scan) ended.
	if agent.WatchPowerButton(context.Background(), sysDir, devDir, modulesDone, testLogger()).Wait(context.Background(), 10*time.Second) {
		t.Fatal("the keyboard was taken for a power button")
	}

	fakeInput(t, sysDir, "event1", "Power Button", "3", "10000000000000 0", "13:65")
	b := agent.WatchPowerButton(context.Background(), sysDir, devDir, modulesDone, testLogger())
	if !b.Wait(context.Background(), 5*time.Second) {
		t.Fatal("the power button was not found")
	}
	select {
	case <-b.Presses():
	case <-time.After(5 * time.Second):
		t.Fatal("no press delivered")
	}
}

// TestWatchPowerButtonCreatesTheNode: without devtmpfs the node is made
// from the device numbers in sysfs.
func TestWatchPowerButtonCreatesTheNode(t *testing.T) {
	sysDir, devDir := t.TempDir(), t.TempDir()
	fakeInput(t, sysDir, "event3", "Power Button", "3", "10000000000000 0", "1:3") // /dev/null's numbers
	modulesDone := make(chan struct{})
	close(modulesDone)
	b := agent.WatchPowerButton(context.Background(), sysDir, devDir, modulesDone, testLogger())
	if !b.Wait(context.Background(), 5*time.Second) {
		t.Fatal("the power button was not opened")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(devDir, "input", "event3"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Fatalf("node mode %o, device %d:%d; want a character device 1:3", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

func TestWatchPowerButtonWithoutButtonGivesUp(t *testing.T) {
	modulesDone := make(chan struct{})
	b := agent.WatchPowerButton(context.Background(), t.TempDir(), t.TempDir(), modulesDone, testLogger())
	close(modulesDone)
	begin := time.Now()
	if b.Wait(context.Background(), 10*time.Second) {
		t.Fatal("found a power button in an empty sysfs")
	}
	if waited := time.Since(begin); waited > 5*time.Second {
		t.Fatalf("Wait took %v after the search ended", waited)
	}
}

// TestPowerButtonShutsDownGracefully: a press takes the Shutdown path:
// SIGTERM to the container's processes, then PowerOff.
func TestPowerButtonShutsDownGracefully(t *testing.T) {
	presses := make(chan struct{}, 1)
	e := newEnv(t, func(c *agent.Config) { c.PowerButton = presses })
	id := e.createContainer(t, "button")
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "main", Args: sh(`trap "exit 7" TERM; while :; do sleep 0.05; done`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "main"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let sh install its trap
	presses <- struct{}{}
	w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "main"})
	if err != nil || w.GetExit().GetExitCode() != 7 {
		t.Fatalf("main: %v %+v, want exit 7 from its TERM trap", err, w.GetExit())
	}
	select {
	case <-e.powerOff:
	case <-time.After(5 * time.Second):
		t.Fatal("PowerOff not called after the power button")
	}
}
