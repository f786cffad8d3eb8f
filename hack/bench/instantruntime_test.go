package main

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
)

func TestInstantRuntimeProcessLifecycle(t *testing.T) {
	ctx := context.Background()
	rt := newInstantRuntime()
	vm, err := rt.CreateVM(ctx, container.VMConfig{ID: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CreateVM(ctx, container.VMConfig{ID: "vm1"}); err == nil {
		t.Error("a second VM with the same ID was created")
	}
	if _, err := vm.Start(ctx, container.ProcessConfig{ID: "main-0"}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := vm.Wait(short, "main-0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running process: %v, want it to block until the deadline", err)
	}
	if err := vm.Signal(ctx, "main-0", syscall.SIGTERM, true); err != nil {
		t.Fatal(err)
	}
	st, err := vm.Wait(ctx, "main-0")
	if err != nil || st.Code != 143 || st.Signal != int(syscall.SIGTERM) {
		t.Fatalf("after SIGTERM: %+v, %v; want exit 143", st, err)
	}
	if _, err := vm.Wait(ctx, "nope"); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("Wait on an unknown process: %v, want ErrNotFound", err)
	}
	if _, err := vm.ReadFile(ctx, "/dev/termination-log", 10); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("ReadFile: %v, want ErrNotFound (no termination message)", err)
	}

	// Delete ends what runs and forgets the VM.
	if _, err := vm.Start(ctx, container.ProcessConfig{ID: "main-1"}); err != nil {
		t.Fatal(err)
	}
	if err := vm.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := vm.Wait(ctx, "main-1"); err != nil || st.Code != 137 {
		t.Errorf("a process of a deleted VM: %+v, %v; want exit 137", st, err)
	}
	if vm.Running(ctx) || rt.live() != 0 {
		t.Errorf("deleted VM: running %v, %d VMs left", vm.Running(ctx), rt.live())
	}
}

func TestInstantRuntimeListenersLongPoll(t *testing.T) {
	ctx := context.Background()
	rt := newInstantRuntime()
	vm, err := rt.CreateVM(ctx, container.VMConfig{ID: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	_, version, err := vm.Listeners(ctx, "", time.Hour)
	if err != nil || version == "" {
		t.Fatalf("first Listeners: %q, %v; want an answer at once", version, err)
	}
	start := time.Now()
	if _, _, err := vm.Listeners(ctx, version, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Errorf("Listeners with the current version returned after %s; a long poll waits", waited)
	}
}
