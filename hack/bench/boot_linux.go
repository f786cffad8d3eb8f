package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// bootBench boots the same kernel with the same QEMU arguments, once with
// the floor initrd (hack/floorinit: load the port's modules, say "ready")
// and once with the agent's initrd (agent as /init, ready = first Info
// answered over yamux + gRPC on the same port).
type bootBench struct {
	keep      bool // leave each boot's directory (console log) behind
	cmdline   string
	bundle    guest.Bundle
	driver    *qemu.Driver
	work      string
	memoryMiB uint64
	log       *slog.Logger
	n         int
	// idleMap, when set, is given each idle floor VM's QEMU pid and spec
	// before it stops (memory_linux.go: where its memory is).
	idleMap func(pid int, spec vm.Spec)
}

func (b *bootBench) spec(initrd, dir string) vm.Spec {
	b.n++
	return vm.Spec{
		ID: fmt.Sprintf("bench%d-%d", os.Getpid(), b.n), Arch: b.bundle.Arch,
		Kernel: b.bundle.Kernel, Initrd: initrd,
		CPUs: 1, MemoryMiB: b.memoryMiB,
		Ports:      []string{vm.AgentPort, vm.LogPort},
		ConsoleLog: filepath.Join(dir, "console.log"),
		Cmdline:    b.cmdline,
	}
}

// floor boots the floor initrd and waits for "ready\n" on the agent port.
func (b *bootBench) floor(ctx context.Context) (bootSample, error) {
	dir, err := os.MkdirTemp(b.work, "floor-")
	if err != nil {
		return bootSample{}, fmt.Errorf("floor boot: %w", err)
	}
	defer b.removeDir(dir)
	spec := b.spec(b.bundle.FloorInitrd, dir)
	start := time.Now()
	m, err := b.driver.Start(ctx, spec, filepath.Join(dir, "qemu"))
	if err != nil {
		return bootSample{}, fmt.Errorf("start floor VM: %w", err)
	}
	defer stopMachine(m, b.log)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return bootSample{}, fmt.Errorf("floor VM: %w", err)
	}
	line, err := readLine(ctx, port)
	var s bootSample
	s.Wall = time.Since(start)
	// Read at once: the floor powers off right after "ready".
	cpu, cpuErr := processCPU(m.Pid())
	mem, memErr := processMemory(m.Pid())
	port.Close()
	if err != nil || line != "ready\n" {
		return bootSample{}, fmt.Errorf("floor VM said %q on the agent port (%v)%s", line, err, consoleTail(spec.ConsoleLog))
	}
	if err := errors.Join(cpuErr, memErr); err != nil {
		return bootSample{}, fmt.Errorf("floor VM: %w", err)
	}
	s.CPU, s.QEMU = cpu, mem
	<-m.Done() // the console log is complete once QEMU is gone
	s.InitStart = initStart(spec.ConsoleLog)
	return s, nil
}

// agent boots an agent initrd (the bundle's, or another build of it to
// compare) and waits for the first Info answer.
func (b *bootBench) agent(ctx context.Context, initrd string) (bootSample, error) {
	return b.agentVM(ctx, initrd, "", "")
}

// savedAgent boots the bundle's agent, waits for its first answer, lets
// its background boot work finish, ends the host's session and saves the
// machine to a file in the work directory: the state every
// restoredAgent resumes.
func (b *bootBench) savedAgent(ctx context.Context) (string, error) {
	state := filepath.Join(b.work, "agent.state")
	_, err := b.agentVM(ctx, b.bundle.Initrd, "", state)
	return state, err
}

// restoredAgent resumes a saved agent VM in a new machine of the same
// shape and waits for the first Info answer of a new host session.
func (b *bootBench) restoredAgent(ctx context.Context, state string) (bootSample, error) {
	return b.agentVM(ctx, b.bundle.Initrd, state, "")
}

// agentSettle is how long savedAgent lets the agent's background boot
// work (the modules after the port's) run before it saves the machine.
const agentSettle = 3 * time.Second

func (b *bootBench) agentVM(ctx context.Context, initrd, restore, save string) (bootSample, error) {
	dir, err := os.MkdirTemp(b.work, "agent-")
	if err != nil {
		return bootSample{}, fmt.Errorf("agent boot: %w", err)
	}
	defer b.removeDir(dir)
	spec := b.spec(initrd, dir)
	spec.RestoreFrom = restore
	start := time.Now()
	m, err := b.driver.Start(ctx, spec, filepath.Join(dir, "qemu"))
	if err != nil {
		return bootSample{}, fmt.Errorf("start agent VM: %w", err)
	}
	defer stopMachine(m, b.log)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return bootSample{}, fmt.Errorf("agent VM: %w", err)
	}
	sess := transport.Serve(port, nil)
	defer sess.Close()
	ac, err := client.Dial(ctx, sess.Open)
	if err != nil {
		return bootSample{}, fmt.Errorf("agent VM: %w", err)
	}
	defer ac.Close()
	info, err := ac.WaitReady(ctx)
	var s bootSample
	s.Wall = time.Since(start)
	cpu, cpuErr := processCPU(m.Pid())
	if err != nil {
		return bootSample{}, fmt.Errorf("agent VM: %w%s", err, consoleTail(spec.ConsoleLog))
	}
	mem, memErr := processMemory(m.Pid())
	if err := errors.Join(cpuErr, memErr); err != nil {
		return bootSample{}, fmt.Errorf("agent VM: %w", err)
	}
	s.CPU, s.QEMU = cpu, mem
	s.ServeStart = time.Duration(info.GetReadyUptimeNs())
	s.FirstAnswer = time.Duration(info.GetUptimeNs())
	s.AgentRSS = info.GetAgentRssBytes()
	s.InitStart = initStart(spec.ConsoleLog)
	if save != "" {
		ac.Close()
		sess.Close()
		if err := sleep(ctx, agentSettle); err != nil {
			return s, err
		}
		saver, ok := m.(vm.Saver)
		if !ok {
			return s, fmt.Errorf("save the agent VM: the %s driver cannot", b.driver.Name())
		}
		if err := saver.Save(ctx, save); err != nil {
			return s, fmt.Errorf("save the agent VM: %w", err)
		}
	}
	return s, nil
}

// idleFloorMemory boots the floor in its "wait" mode (it stays up after
// "ready" until told to power off), lets it settle and returns QEMU's
// memory: the host cost of a VM whose guest does nothing.
func (b *bootBench) idleFloorMemory(ctx context.Context, settle time.Duration) (memory, error) {
	dir, err := os.MkdirTemp(b.work, "floor-idle-")
	if err != nil {
		return memory{}, fmt.Errorf("idle floor: %w", err)
	}
	defer b.removeDir(dir)
	spec := b.spec(b.bundle.FloorInitrd, dir)
	spec.Cmdline = strings.TrimSpace("vkavfloor=wait " + spec.Cmdline)
	m, err := b.driver.Start(ctx, spec, filepath.Join(dir, "qemu"))
	if err != nil {
		return memory{}, fmt.Errorf("start idle floor VM: %w", err)
	}
	defer stopMachine(m, b.log)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return memory{}, fmt.Errorf("idle floor VM: %w", err)
	}
	defer port.Close()
	if line, err := readLine(ctx, port); err != nil || line != "ready\n" {
		return memory{}, fmt.Errorf("idle floor VM said %q (%v)%s", line, err, consoleTail(spec.ConsoleLog))
	}
	if err := sleep(ctx, settle); err != nil {
		return memory{}, err
	}
	if b.idleMap != nil {
		b.idleMap(m.Pid(), spec)
	}
	return processMemory(m.Pid())
}

func (b *bootBench) removeDir(dir string) {
	if !b.keep {
		os.RemoveAll(dir)
	}
}

// readLine reads one line from r, giving up when ctx ends.
func readLine(ctx context.Context, r io.ReadCloser) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		done <- result{line, err}
	}()
	select {
	case res := <-done:
		return res.line, res.err
	case <-ctx.Done():
		r.Close()
		res := <-done
		return res.line, fmt.Errorf("read a line: %w", ctx.Err())
	}
}

// stopMachine kills a machine and waits for QEMU to be gone, so the next
// boot does not share the CPU with its exit.
func stopMachine(m vm.Machine, log *slog.Logger) {
	if err := m.Kill(); err != nil {
		log.Debug("kill machine", "err", err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		log.Warn("machine did not stop within 10 s", "pid", m.Pid())
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait %v: %w", d, ctx.Err())
	}
}
