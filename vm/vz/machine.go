package vz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// hypervisor is what a machine needs from *vz.VirtualMachine; S is the
// framework's state type. Declaring it here keeps the machine's logic (one
// owner goroutine, stop requests, port hand-out, teardown) free of vz, so
// it is tested on Linux; machine_darwin.go adapts the real thing.
type hypervisor[S comparable] interface {
	Start() error
	StateChangedNotify() <-chan S
	State() S
	CanRequestStop() bool
	RequestStop() (bool, error)
	CanStop() bool
	Stop() error
	// SetBalloonTarget sets the traditional memory balloon's target guest
	// memory size in bytes.
	SetBalloonTarget(bytes uint64) error
}

// stateClass is what the machine makes of a state change.
type stateClass int

const (
	stateTransient stateClass = iota // starting, running, stopping, ...
	stateStopped
	stateFailed
)

// machine is one running machine. A single owner goroutine makes every call
// on the hypervisor and reads its state changes: older vz releases crashed
// with "misuse of an invalid Handle" when RequestStop and state observers
// raced, and one owner rules that out.
type machine[S comparable] struct {
	log      *slog.Logger
	classify func(S) stateClass
	requests chan machineRequest
	done     chan struct{}

	mu      sync.Mutex
	ends    *hostEnds
	stopped bool  // set with err, before done is closed
	err     error // why the machine stopped
	taken   map[string]bool
}

type requestKind int

const (
	requestGuestStop requestKind = iota
	requestForceStop
	requestBalloon
)

type machineRequest struct {
	kind  requestKind
	bytes uint64 // requestBalloon's target
	reply chan error
}

// startMachine starts hv and returns once it runs. ends are released when
// the machine stops (or fails to start).
func startMachine[S comparable](ctx context.Context, log *slog.Logger, hv hypervisor[S], classify func(S) stateClass, ends *hostEnds) (*machine[S], error) {
	m := &machine[S]{
		log:      log,
		classify: classify,
		requests: make(chan machineRequest),
		done:     make(chan struct{}),
		ends:     ends,
		taken:    map[string]bool{},
	}
	started := make(chan error, 1)
	go m.own(hv, started)
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
		return m, nil
	case <-ctx.Done():
		// A start in flight cannot be aborted; stop the machine as soon as
		// the owner is free again.
		go m.Kill()
		return nil, fmt.Errorf("start: %w", ctx.Err())
	}
}

// own is the owner goroutine: it starts hv, then serves stop requests and
// state changes until the machine stops.
func (m *machine[S]) own(hv hypervisor[S], started chan<- error) {
	states := hv.StateChangedNotify()
	if err := hv.Start(); err != nil {
		started <- err
		m.finish(fmt.Errorf("vz: start: %w", err))
		return
	}
	started <- nil
	killed := false
	for {
		select {
		case state := <-states:
			m.log.Debug("vz state changed", "state", fmt.Sprint(state))
			switch m.classify(state) {
			case stateStopped:
				if killed {
					m.finish(ErrKilled)
				} else {
					m.finish(nil)
				}
				return
			case stateFailed:
				m.finish(fmt.Errorf("vz: machine entered state %v", state))
				return
			}
		case r := <-m.requests:
			switch r.kind {
			case requestGuestStop:
				r.reply <- askGuestToStop(hv)
			case requestForceStop:
				killed = true
				r.reply <- forceStop(hv, m.classify)
			case requestBalloon:
				r.reply <- hv.SetBalloonTarget(r.bytes)
			}
		}
	}
}

func askGuestToStop[S comparable](hv hypervisor[S]) error {
	if !hv.CanRequestStop() {
		return fmt.Errorf("vz: cannot ask the guest to stop in state %v", hv.State())
	}
	ok, err := hv.RequestStop()
	if err != nil {
		return fmt.Errorf("vz: request stop: %w", err)
	}
	if !ok {
		return errors.New("vz: request stop was not delivered")
	}
	return nil
}

func forceStop[S comparable](hv hypervisor[S], classify func(S) stateClass) error {
	if classify(hv.State()) == stateStopped {
		return nil
	}
	if !hv.CanStop() {
		return fmt.Errorf("vz: cannot stop in state %v", hv.State())
	}
	if err := hv.Stop(); err != nil {
		return fmt.Errorf("vz: stop: %w", err)
	}
	return nil
}

// finish records why the machine ended and releases vz's descriptors, so
// the host ends of the console ports read EOF.
func (m *machine[S]) finish(err error) {
	m.mu.Lock()
	m.stopped, m.err = true, err
	m.ends.closeVZSide()
	for name, p := range m.ends.ports {
		if !m.taken[name] {
			p.Close()
		}
	}
	m.mu.Unlock()
	// The console log is complete when the machine counts as stopped.
	m.ends.waitConsole(2 * time.Second)
	if err != nil {
		m.log.Info("vz machine stopped", "err", err)
	} else {
		m.log.Info("vz machine powered off")
	}
	close(m.done)
}

// call hands a request to the owner. After the machine has stopped there
// is nothing left to stop, which is success.
func (m *machine[S]) call(ctx context.Context, kind requestKind) error {
	return m.send(ctx, machineRequest{kind: kind})
}

func (m *machine[S]) send(ctx context.Context, r machineRequest) error {
	reply := make(chan error, 1)
	r.reply = reply
	select {
	case m.requests <- r:
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Port implements vm.Machine: the host end of a named console port, handed
// out once.
func (m *machine[S]) Port(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil, fmt.Errorf("vz: port %q: machine has stopped", name)
	}
	p, ok := m.ends.ports[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("vz: port %q is not configured", name)
	case m.taken[name]:
		return nil, fmt.Errorf("vz: port %q was already taken", name)
	}
	m.taken[name] = true
	return p, nil
}

// RequestStop implements vm.Machine: it asks the guest to power off.
func (m *machine[S]) RequestStop(ctx context.Context) error { return m.call(ctx, requestGuestStop) }

// Kill implements vm.Machine: it stops the machine at once.
func (m *machine[S]) Kill() error { return m.call(context.Background(), requestForceStop) }

// SetMemoryTarget implements vm.BalloonMachine through the owner
// goroutine, like every other call on the hypervisor.
func (m *machine[S]) SetMemoryTarget(ctx context.Context, bytes uint64) error {
	return m.send(ctx, machineRequest{kind: requestBalloon, bytes: bytes})
}

// Done implements vm.Machine.
func (m *machine[S]) Done() <-chan struct{} { return m.done }

// Err implements vm.Machine: nil after the guest powered off, ErrKilled
// after Kill, otherwise why the machine failed.
func (m *machine[S]) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Pid implements vm.Machine: the guest's memory belongs to this process
// (the per-VM shim), where Virtualization.framework runs the machine.
func (m *machine[S]) Pid() int { return os.Getpid() }

var _ vm.BalloonMachine = (*machine[int])(nil)
