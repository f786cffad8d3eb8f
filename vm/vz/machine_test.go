package vz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// fakeState mirrors the vz states the machine tells apart.
type fakeState int

const (
	fakeStopped fakeState = iota
	fakeRunning
	fakeStarting
	fakeError
)

func classifyFake(s fakeState) stateClass {
	switch s {
	case fakeStopped:
		return stateStopped
	case fakeError:
		return stateFailed
	}
	return stateTransient
}

// fakeHypervisor behaves like *vz.VirtualMachine for the machine's logic:
// states arrive on a channel, the guest powers off asynchronously after a
// stop request. It fails the test if two calls ever overlap, which the
// single owner goroutine must prevent.
type fakeHypervisor struct {
	t         *testing.T
	states    chan fakeState
	startErr  error
	startGate chan struct{} // Start waits for it when non-nil
	busy      atomic.Bool

	mu    sync.Mutex
	state fakeState
	calls []string
}

func newFake(t *testing.T) *fakeHypervisor {
	return &fakeHypervisor{t: t, states: make(chan fakeState, 64)}
}

func (f *fakeHypervisor) enter(name string) func() {
	if !f.busy.CompareAndSwap(false, true) {
		f.t.Errorf("%s called while another hypervisor call was in flight", name)
	}
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
	return func() { f.busy.Store(false) }
}

func (f *fakeHypervisor) set(s fakeState) {
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	f.states <- s
}

func (f *fakeHypervisor) called() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

func (f *fakeHypervisor) Start() error {
	defer f.enter("Start")()
	if f.startGate != nil {
		<-f.startGate
	}
	if f.startErr != nil {
		f.set(fakeError)
		return f.startErr
	}
	f.set(fakeStarting)
	f.set(fakeRunning)
	return nil
}

func (f *fakeHypervisor) StateChangedNotify() <-chan fakeState { return f.states }

func (f *fakeHypervisor) State() fakeState {
	defer f.enter("State")()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeHypervisor) CanRequestStop() bool {
	defer f.enter("CanRequestStop")()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state == fakeRunning
}

// RequestStop delivers the request; the guest powers off a little later.
func (f *fakeHypervisor) RequestStop() (bool, error) {
	defer f.enter("RequestStop")()
	go func() {
		time.Sleep(10 * time.Millisecond)
		f.set(fakeStopped)
	}()
	return true, nil
}

func (f *fakeHypervisor) CanStop() bool {
	defer f.enter("CanStop")()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state == fakeRunning || f.state == fakeStarting
}

func (f *fakeHypervisor) Stop() error {
	defer f.enter("Stop")()
	f.set(fakeStopped)
	return nil
}

func (f *fakeHypervisor) SetBalloonTarget(bytes uint64) error {
	defer f.enter(fmt.Sprintf("SetBalloonTarget(%d)", bytes))()
	return nil
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t *testing.T, f *fakeHypervisor, ports ...string) (*machine[fakeState], *hostEnds) {
	t.Helper()
	ends := newHostEnds()
	for _, p := range ports {
		if _, _, err := ends.addPort(p); err != nil {
			t.Fatal(err)
		}
	}
	m, err := startMachine(context.Background(), discard, f, classifyFake, ends)
	if err != nil {
		t.Fatalf("startMachine: %v", err)
	}
	return m, ends
}

func waitDone(t *testing.T, m vm.Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("machine did not stop")
	}
}

func TestMachineGuestPowerOff(t *testing.T) {
	f := newFake(t)
	m, ends := start(t, f, vm.AgentPort, vm.LogPort)
	agent, err := m.Port(context.Background(), vm.AgentPort)
	if err != nil {
		t.Fatal(err)
	}
	logPort := ends.ports[vm.LogPort] // never taken: the machine closes it
	f.set(fakeStopped)                // the guest powers off by itself
	waitDone(t, m)
	if err := m.Err(); err != nil {
		t.Errorf("Err after a guest power-off: %v", err)
	}
	if got, err := io.ReadAll(agent); err != nil || len(got) != 0 {
		t.Errorf("taken port after stop: %q, %v; want EOF", got, err)
	}
	agent.Close()
	if _, err := logPort.Write([]byte("x")); err == nil {
		t.Error("untaken port still open after stop")
	}
	if _, err := m.Port(context.Background(), vm.LogPort); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Port after stop: %v", err)
	}
}

func TestMachineSetMemoryTargetGoesThroughTheOwner(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	var bm vm.BalloonMachine = m
	if err := bm.SetMemoryTarget(context.Background(), 256<<20); err != nil {
		t.Fatalf("SetMemoryTarget: %v", err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m)
	// A stopped machine has no balloon to move: success, nothing called.
	if err := bm.SetMemoryTarget(context.Background(), 128<<20); err != nil {
		t.Errorf("SetMemoryTarget after stop: %v", err)
	}
	if got := f.called(); !strings.HasPrefix(got, "Start,SetBalloonTarget(268435456),") || strings.Contains(got, "134217728") {
		t.Errorf("hypervisor calls %s", got)
	}
}

func TestMachineRequestStop(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	if err := m.RequestStop(context.Background()); err != nil {
		t.Fatalf("RequestStop: %v", err)
	}
	waitDone(t, m)
	if err := m.Err(); err != nil {
		t.Errorf("Err after a requested power-off: %v", err)
	}
	if got := f.called(); got != "Start,CanRequestStop,RequestStop" {
		t.Errorf("hypervisor calls %s", got)
	}
	// Asking again once stopped succeeds: the machine is where it was asked to be.
	if err := m.RequestStop(context.Background()); err != nil {
		t.Errorf("RequestStop after stop: %v", err)
	}
}

func TestMachineKill(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitDone(t, m)
	if !errors.Is(m.Err(), ErrKilled) {
		t.Errorf("Err after Kill: %v, want ErrKilled", m.Err())
	}
	if err := m.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if got := f.called(); got != "Start,State,CanStop,Stop" {
		t.Errorf("hypervisor calls %s", got)
	}
}

func TestMachineErrorState(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	f.set(fakeError)
	waitDone(t, m)
	if err := m.Err(); err == nil || errors.Is(err, ErrKilled) {
		t.Errorf("Err after the error state: %v", err)
	}
}

func TestMachineStartFailureReleasesEnds(t *testing.T) {
	f := newFake(t)
	f.startErr = errors.New("VZErrorDomain Code=2 invalid configuration")
	ends := newHostEnds()
	if _, _, err := ends.addPort(vm.AgentPort); err != nil {
		t.Fatal(err)
	}
	port := ends.ports[vm.AgentPort]
	_, err := startMachine(context.Background(), discard, f, classifyFake, ends)
	if err == nil || !strings.Contains(err.Error(), "invalid configuration") {
		t.Fatalf("startMachine: %v, want the start error", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := port.Write([]byte("x")); err != nil {
			break // released
		}
		if time.Now().After(deadline) {
			t.Fatal("port pipes still open after a failed start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A caller that gives up during a slow start gets its error at once; the
// machine is stopped as soon as the start completes.
func TestMachineStartCancelled(t *testing.T) {
	f := newFake(t)
	f.startGate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := startMachine(ctx, discard, f, classifyFake, newHostEnds())
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("startMachine after cancel: %v", err)
	}
	close(f.startGate)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(f.called(), "Stop") {
		if time.Now().After(deadline) {
			t.Fatalf("machine not stopped after the abandoned start; calls %s", f.called())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMachinePorts(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f, vm.AgentPort)
	defer m.Kill()
	ctx := context.Background()
	if _, err := m.Port(ctx, vm.AgentPort); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Port(ctx, vm.AgentPort); err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Errorf("second Port: %v", err)
	}
	if _, err := m.Port(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("unknown Port: %v", err)
	}
}

// Stop requests from many goroutines while the guest changes state are all
// served by the owner, one at a time (the fake fails on overlap).
func TestMachineSerialisesHypervisorCalls(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if i%2 == 0 {
				m.RequestStop(ctx)
			} else {
				m.Kill()
			}
		}(i)
	}
	wg.Wait()
	waitDone(t, m)
	if m.Pid() <= 0 {
		t.Errorf("Pid %d", m.Pid())
	}
}

func TestMachineRequestStopBeforeRunning(t *testing.T) {
	f := newFake(t)
	m, _ := start(t, f)
	defer m.Kill()
	// Drain Starting/Running, then pretend the guest is not yet reachable.
	f.mu.Lock()
	f.state = fakeStarting
	f.mu.Unlock()
	err := m.RequestStop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot ask the guest to stop") {
		t.Errorf("RequestStop while starting: %v", err)
	}
}
