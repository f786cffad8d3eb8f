package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestPowerOffSequence(t *testing.T) {
	var log []string
	alive := []int{5, 6}
	ops := PowerOps{
		Signal: func(sig syscall.Signal) error {
			log = append(log, "signal "+strconv.Itoa(int(sig)))
			if sig == syscall.SIGKILL {
				alive = nil
			}
			return nil
		},
		Remaining:  func() []int { return alive },
		Sync:       func() { log = append(log, "sync") },
		UnmountAll: func() error { log = append(log, "unmount"); return errors.New("busy") },
		Halt:       func() error { log = append(log, "halt"); return nil },
		Sleep:      func(time.Duration) {},
	}
	if err := PowerOff(context.Background(), ops, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"signal 15", "signal 9", "sync", "unmount", "sync", "halt"}
	if !slices.Equal(log, want) {
		t.Fatalf("sequence %v, want %v", log, want)
	}
	// Processes that leave on SIGTERM are not SIGKILLed.
	log, alive = nil, nil
	PowerOff(context.Background(), ops, time.Second, nil)
	if slices.Contains(log, "signal 9") {
		t.Fatalf("SIGKILL with nothing left: %v", log)
	}
}

func TestUserProcessesSkipsKernelThreads(t *testing.T) {
	proc := t.TempDir()
	write := func(pid int, stat string) {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	}
	// pid (comm) state ppid pgrp session tty tpgid flags ...
	write(1, "1 (init) S 0 1 1 0 -1 4194560 0 0")
	write(2, "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0") // PF_KTHREAD set
	write(40, "40 (sh -c (odd) name) S 1 40 40 0 -1 4194560 0")
	write(41, "41 (self) S 1 41 41 0 -1 4194560 0")
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	if got := userProcesses(proc, 41); !slices.Equal(got, []int{40}) {
		t.Fatalf("got %v", got)
	}
}

func TestMountPathUnescape(t *testing.T) {
	if got := unescapeMountPath(`/run/a\040b\011c\134`); got != "/run/a b\tc\\" {
		t.Fatalf("got %q", got)
	}
	if unescapeMountPath("/plain") != "/plain" {
		t.Fatal("plain path changed")
	}
}

func TestMountSystemIntoADirectory(t *testing.T) {
	// The tests run in a private mount namespace (see harness_linux_test.go).
	root := t.TempDir()
	mounts := []SystemMount{
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
		{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
		{"nonsense", "/bad", "no-such-fs", 0, ""},
	}
	err := MountSystem(root, mounts)
	t.Cleanup(func() { unmountUnder(root) })
	if err == nil {
		t.Fatal("an unknown filesystem type mounted")
	}
	if _, serr := os.Stat(filepath.Join(root, "proc", "self", "status")); serr != nil {
		t.Fatalf("proc not mounted after a failure elsewhere: %v (%v)", serr, err)
	}
	mps, _ := mountPoints(root)
	if len(mps) != 2 {
		t.Fatalf("mount points %v", mps)
	}
	if err := unmountUnder(root); err != nil {
		t.Fatal(err)
	}
	if mps, _ := mountPoints(root); len(mps) != 0 {
		t.Fatalf("left mounted: %v", mps)
	}
}
