package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// savedFloor boots the floor in its wait mode, waits for "ready" and saves
// the machine; it returns the state file and the spec it was saved from.
func savedFloor(ctx context.Context, t *testing.T, d *Driver) (string, vm.Spec) {
	t.Helper()
	b := floorBundle(t)
	spec := floorSpec(t, b, "wait")
	m := startVM(ctx, t, d, spec)
	if got := readLines(ctx, t, m, "ready"); got[len(got)-1] != "ready" {
		t.Fatalf("floor said %q", got)
	}
	saver, ok := m.(vm.Saver)
	if !ok {
		t.Fatalf("a QEMU machine is not a vm.Saver")
	}
	state := filepath.Join(t.TempDir(), "floor.state")
	if err := saver.Save(ctx, state); err != nil {
		t.Fatalf("save: %v", err)
	}
	if err := m.Kill(); err != nil {
		t.Fatalf("kill the saved machine: %v", err)
	}
	return state, spec
}

// A saved guest resumes in a new machine of the same shape: the floor,
// which answers its port only while it runs, powers off on "poweroff"
// written after the restore.
func TestRestoreResumesTheSavedGuest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	d := testDriver(t)
	state, saved := savedFloor(ctx, t, d)

	for i := range 2 { // one state, many machines
		spec := floorSpec(t, floorBundle(t), "wait")
		spec.RestoreFrom = state
		m := startVM(ctx, t, d, spec)
		_, port := openPort(ctx, t, m)
		if _, err := port.Write([]byte("poweroff\n")); err != nil {
			t.Fatalf("restore %d: write to the port: %v", i, err)
		}
		waitDone(ctx, t, m)
		if err := m.Err(); err != nil {
			t.Fatalf("restore %d: the restored guest did not power off by itself: %v", i, err)
		}
		if spec.ID == saved.ID {
			t.Fatalf("restore %d reused the saved machine's ID", i)
		}
		// Resumed, not booted: the kernel's banner is only in a boot's
		// console; the floor's last words are in this one.
		console, err := os.ReadFile(spec.ConsoleLog)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(console), "Linux version") || !strings.Contains(string(console), "floorinit: powering off") {
			t.Fatalf("restore %d: the console is not that of a resumed floor:\n%s", i, console)
		}
	}
}

// A state restored into a machine of another shape fails the machine with
// QEMU's reason, never a guest that runs on the wrong devices.
func TestRestoreIntoAnotherShapeFails(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	d := testDriver(t)
	state, _ := savedFloor(ctx, t, d)

	spec := floorSpec(t, floorBundle(t), "wait")
	spec.MemoryMiB *= 2
	spec.RestoreFrom = state
	m, err := d.Start(ctx, spec, t.TempDir())
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { m.Kill() })
	select {
	case <-m.Done():
	case <-time.After(bootTimeout):
		t.Fatalf("a machine restored from a %d MiB state into %d MiB still runs", spec.MemoryMiB/2, spec.MemoryMiB)
	}
	err = m.Err()
	if err == nil || errors.Is(err, ErrKilled) || !strings.Contains(err.Error(), "qemu exited") {
		t.Fatalf("restore into another shape: err = %v, want QEMU's exit with its log", err)
	}
	t.Logf("as expected: %v", err)
}
