//go:build darwin && !no_vz && vz_integration

// Boot tests need a Mac with virtualization (hosted Apple-silicon CI
// runners have no nested virtualization) and an arm64 Image:
//
//	go run ./cmd/vk-applevm kernel fetch      # or any arm64 Image
//	VKAV_VZ_KERNEL=/path/to/vmlinux go test -tags vz_integration \
//	    -exec "$PWD/hack/codesign-exec.sh" ./vm/vz -run Boot -v

package vz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

func bootSpec(t *testing.T, cmdline string) (vm.Spec, string) {
	t.Helper()
	kernel := os.Getenv("VKAV_VZ_KERNEL")
	if kernel == "" {
		t.Fatal("VKAV_VZ_KERNEL is not set: point it at an arm64 Image (`vk-applevm kernel fetch` installs one)")
	}
	dir := shortDir(t)
	// An initramfs holding nothing: the kernel finds no init and no root
	// file system and panics, which is all these tests need from a guest.
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, emptyCpio(), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := vm.Spec{
		ID:         "vztest",
		Arch:       "arm64",
		Kernel:     kernel,
		Initrd:     initrd,
		Cmdline:    cmdline,
		CPUs:       1,
		MemoryMiB:  256,
		ConsoleLog: filepath.Join(dir, "console.log"),
		Ports:      []string{vm.AgentPort},
	}
	return spec, dir
}

// emptyCpio is a newc archive with only its trailer entry
// (Documentation/driver-api/early-userspace/buffer-format.rst).
func emptyCpio() []byte {
	const name = "TRAILER!!!\x00"
	// magic, then 13 eight-digit hex fields: ino mode uid gid nlink mtime
	// filesize devmajor devminor rdevmajor rdevminor namesize check.
	hdr := "070701" + strings.Repeat("00000000", 4) + "00000001" + strings.Repeat("00000000", 6) +
		fmt.Sprintf("%08x", len(name)) + "00000000"
	b := []byte(hdr + name)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// panic=-1 (added by Describe) turns the guest's panic into a reboot, which
// stops a vz machine: Done closes with a nil Err, and the kernel's console
// reached the log through hvc0.
func TestBootPanicStopsMachine(t *testing.T) {
	spec, dir := bootSpec(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := New(Options{}).Start(ctx, spec, dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		m.Kill()
		t.Fatal("guest did not stop after panicking")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after the guest stopped itself: %v", err)
	}
	log, err := os.ReadFile(spec.ConsoleLog)
	if err != nil || !strings.Contains(string(log), "Linux version") || !strings.Contains(string(log), "Kernel panic") {
		t.Errorf("console log lacks the kernel banner and panic (%v):\n%s", err, log)
	}
	if m.Pid() != os.Getpid() {
		t.Errorf("Pid %d, want this process %d", m.Pid(), os.Getpid())
	}
}

// With panic=0 the panicked guest stays up until Kill.
func TestBootKill(t *testing.T) {
	spec, dir := bootSpec(t, "panic=0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := New(Options{}).Start(ctx, spec, dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		t.Fatalf("Port: %v", err)
	}
	if _, err := m.Port(ctx, vm.AgentPort); err == nil {
		t.Error("Port handed out the same port twice")
	}
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatal("machine did not stop after Kill")
	}
	if !errors.Is(m.Err(), ErrKilled) {
		t.Errorf("Err after Kill: %v, want ErrKilled", m.Err())
	}
	// The port's host end reads EOF once vz released its side. That
	// depends on the framework's XPC process letting go of its duplicates,
	// so the read gets a deadline rather than the power to hang the test.
	read := make(chan error, 1)
	go func() {
		_, err := port.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Error("port still readable after the machine stopped")
		}
	case <-ctx.Done():
		t.Error("port read neither EOF nor an error by the test's deadline after the machine stopped")
	}
	port.Close()
	if err := m.RequestStop(ctx); err != nil {
		t.Errorf("RequestStop on a stopped machine: %v", err)
	}
}
