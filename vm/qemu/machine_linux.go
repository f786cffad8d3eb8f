package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/consolelog"
)

// killGrace is how long Kill waits for QEMU to quit by QMP before SIGKILL.
const killGrace = 2 * time.Second

// helperExitGrace is how long a virtiofsd that exited may precede QEMU's
// own exit: on a power-off QEMU closes the vhost-user connections (and
// virtiofsd quits) before it exits itself.
const helperExitGrace = 2 * time.Second

type machine struct {
	spec vm.Spec
	dir  string
	cmd  *exec.Cmd
	log  *slog.Logger
	// virtiofsds serve spec.Shares, in order; they end with the machine.
	virtiofsds []*virtiofsd

	done    chan struct{}
	err     error         // set before done closes
	console chan struct{} // closed once the console log has all QEMU wrote
	qmpUp   chan struct{}
	// running is closed once the guest runs: at once for a boot, after
	// the load and cont for a restore (Spec.RestoreFrom).
	running chan struct{}
	mu      sync.Mutex
	qmp     *qmpClient
	reason  string // SHUTDOWN event reason
	killing bool
	failure error // a virtiofsd died under the running machine
}

var _ vm.Saver = (*machine)(nil)

func newMachine(spec vm.Spec, dir string, cmd *exec.Cmd, fsds []*virtiofsd, log *slog.Logger) *machine {
	m := &machine{spec: spec, dir: dir, cmd: cmd, virtiofsds: fsds, log: log, done: make(chan struct{}), qmpUp: make(chan struct{}), console: make(chan struct{}), running: make(chan struct{})}
	if spec.RestoreFrom == "" {
		close(m.running)
	}
	return m
}

// run starts QEMU from a goroutine that keeps its OS thread locked for the
// VM's whole life: Pdeathsig fires when the thread that forked the child
// exits, not the process (go.dev/issue/27505), and Go may retire idle
// threads. console is the read end of QEMU's console pipe; once QEMU runs,
// it is drained into the capped console log until QEMU exits.
func (m *machine) run(console *os.File) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := disableTHP(); err != nil {
			m.log.Warn("turn transparent huge pages off for QEMU", "err", err)
		}
		if err := m.cmd.Start(); err != nil {
			started <- fmt.Errorf("run %s: %w", m.cmd.Path, err)
			return
		}
		started <- nil
		werr := m.cmd.Wait()
		m.finish(werr)
	}()
	if err := <-started; err != nil {
		return err
	}
	go func() {
		defer close(m.console)
		if err := consolelog.Copy(console, m.spec.ConsoleLog, m.spec.ConsoleLogMaxSize, m.log); err != nil {
			m.log.Warn("console log", "err", err)
		}
	}()
	go m.connectQMP()
	for _, v := range m.virtiofsds {
		go m.watchVirtiofsd(v)
	}
	return nil
}

// watchVirtiofsd kills the machine when v dies under it: the guest's
// accesses to the share would otherwise hang for good.
func (m *machine) watchVirtiofsd(v *virtiofsd) {
	select {
	case <-m.done:
		return
	case <-v.done:
	}
	select {
	case <-m.done:
		return // a power-off: QEMU hung up on virtiofsd first
	case <-time.After(helperExitGrace):
	}
	m.mu.Lock()
	if m.failure == nil {
		m.failure = v.err
	}
	m.mu.Unlock()
	m.log.Error("virtiofsd died; killing the machine", "err", v.err)
	m.Kill()
}

func (m *machine) finish(werr error) {
	// QEMU sends SHUTDOWN before it exits; let the reader take it from the
	// socket (it sees EOF right after) before judging why QEMU ended.
	m.mu.Lock()
	q := m.qmp
	m.mu.Unlock()
	if q != nil {
		select {
		case <-q.closed:
		case <-time.After(time.Second):
		}
	}
	for _, v := range m.virtiofsds {
		v.stop()
	}
	// The console log is complete once QEMU is gone: its last output (a
	// panic message above all) is in the pipe, read to EOF now.
	select {
	case <-m.console:
	case <-time.After(helperExitGrace):
		m.log.Warn("console log still copying after QEMU exited")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.failure != nil:
		m.err = m.failure
	case m.killing:
		m.err = ErrKilled
	case werr != nil:
		m.err = fmt.Errorf("qemu exited: %w%s", werr, m.logTail())
	case m.reason == "guest-reset" || m.reason == "guest-panic":
		m.err = ErrGuestReset
	case m.reason == "host-signal" || m.reason == "host-qmp-quit":
		m.err = fmt.Errorf("qemu stopped by the host (%s)", m.reason)
	}
	if m.qmp != nil {
		m.qmp.Close()
	}
	m.log.Info("qemu exited", "err", m.err, "reason", m.reason)
	close(m.done)
}

// logTail returns the end of qemu.log for error messages.
func (m *machine) logTail() string { return fileTail(filepath.Join(m.dir, "qemu.log")) }

// connectQMP connects once QEMU has created the socket and keeps the
// session for commands and the SHUTDOWN event.
func (m *machine) connectQMP() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := m.dialSocket(ctx, qmpSocket(m.dir))
	if err != nil {
		select {
		case <-m.done: // QEMU ended first; nothing to control
		default:
			m.log.Warn("no QMP connection", "err", err)
		}
		return
	}
	q, err := newQMPClient(ctx, conn, func(ev qmpMessage) {
		if ev.Event == "SHUTDOWN" {
			m.mu.Lock()
			m.reason = ev.Data.Reason
			m.mu.Unlock()
		}
	})
	if err != nil {
		conn.Close()
		select {
		case <-m.done:
		default:
			m.log.Warn("no QMP session", "err", err)
		}
		return
	}
	m.mu.Lock()
	m.qmp = q
	m.mu.Unlock()
	close(m.qmpUp)
	if m.spec.RestoreFrom != "" {
		m.resume(ctx, q)
	}
}

// resume lets a restored guest run once QEMU has loaded it: it was saved
// paused, so QEMU keeps it paused after the load. A load that fails ends
// QEMU, with the reason in qemu.log.
func (m *machine) resume(ctx context.Context, q *qmpClient) {
	err := m.pollStatus(ctx, q, "query-status", 10*time.Millisecond, func(status string) (bool, error) {
		switch status {
		case "running":
			return true, nil
		case "paused":
			return true, q.execute(ctx, "cont")
		case "inmigrate":
			return false, nil
		}
		return false, fmt.Errorf("restored machine is %q", status)
	})
	if err == nil {
		close(m.running)
		return
	}
	select {
	case <-m.done: // QEMU ended (a failed load): finish has the reason
	default:
		m.mu.Lock()
		if m.failure == nil {
			m.failure = fmt.Errorf("resume the restored machine: %w", err)
		}
		m.mu.Unlock()
		m.log.Error("resume the restored machine", "err", err)
		m.Kill()
	}
}

// pollStatus runs command (query-status or query-migrate) until final
// says its status is the last one, waiting from 1 ms up to most between
// tries; it gives up when the machine stops or ctx ends.
func (m *machine) pollStatus(ctx context.Context, q *qmpClient, command string, most time.Duration, final func(status string) (bool, error)) error {
	for wait := time.Millisecond; ; wait = min(2*wait, most) {
		status, err := queryStatus(ctx, q, command)
		if err != nil {
			return err
		}
		if done, err := final(status); done || err != nil {
			return err
		}
		select {
		case <-m.done:
			return fmt.Errorf("%s: machine stopped: %w", command, m.Err())
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", command, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// queryStatus runs query-status or query-migrate and returns its status.
func queryStatus(ctx context.Context, q *qmpClient, command string) (string, error) {
	ret, err := q.call(ctx, command, nil, -1)
	if err != nil {
		return "", err
	}
	var r struct {
		Status    string `json:"status"`
		ErrorDesc string `json:"error-desc"`
	}
	if err := json.Unmarshal(ret, &r); err != nil {
		return "", fmt.Errorf("%s: %w", command, err)
	}
	if r.ErrorDesc != "" {
		return r.Status, fmt.Errorf("%s: %s: %s", command, r.Status, r.ErrorDesc)
	}
	return r.Status, nil
}

// Save implements vm.Saver: it pauses the guest and writes the machine's
// state to path (QEMU's migration stream, through a descriptor passed
// over QMP). The guest stays paused; the caller kills the machine.
func (m *machine) Save(ctx context.Context, path string) (retErr error) {
	q, err := m.session(ctx)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".saving-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	defer func() {
		f.Close()
		if retErr != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err := q.call(ctx, "getfd", map[string]string{"fdname": "save"}, int(f.Fd())); err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	if err := q.execute(ctx, "stop"); err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	if _, err := q.call(ctx, "migrate", map[string]string{"uri": "fd:save"}, -1); err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	err = m.pollStatus(ctx, q, "query-migrate", 20*time.Millisecond, func(status string) (bool, error) {
		if status == "failed" || status == "cancelled" {
			return false, fmt.Errorf("migration %s", status)
		}
		return status == "completed", nil
	})
	if err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", m.spec.ID, err)
	}
	return nil
}

// dialSocket connects to a unix socket QEMU creates asynchronously after it
// starts, retrying until ctx ends or QEMU exits.
func (m *machine) dialSocket(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	wait := time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("connect %s: machine stopped: %w", path, m.Err())
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Port implements vm.Machine: a connection to the port's chardev socket.
// QEMU's socket chardev takes one client at a time; after a Close the
// port can be connected again. A restored machine's ports connect once
// its guest runs, so that the guest learns of the connection from the
// loaded port state rather than from one the load then overwrites (a
// precaution: the saved host_connected flag is QEMU's migration state).
func (m *machine) Port(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	select {
	case <-m.running:
	case <-m.done:
		return nil, fmt.Errorf("open port %s of %s: machine stopped: %w", name, m.spec.ID, m.Err())
	case <-ctx.Done():
		return nil, fmt.Errorf("open port %s of %s: wait for the restored guest: %w", name, m.spec.ID, ctx.Err())
	}
	for i, p := range m.spec.Ports {
		if p == name {
			conn, err := m.dialSocket(ctx, portSocket(m.dir, i))
			if err != nil {
				return nil, fmt.Errorf("open port %s of %s: %w", name, m.spec.ID, err)
			}
			return conn, nil
		}
	}
	return nil, fmt.Errorf("open port %s of %s: no such port (spec has %v)", name, m.spec.ID, m.spec.Ports)
}

func (m *machine) session(ctx context.Context) (*qmpClient, error) {
	select {
	case <-m.qmpUp:
	case <-m.done:
		return nil, fmt.Errorf("machine %s stopped", m.spec.ID)
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for QMP of %s: %w", m.spec.ID, ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.qmp, nil
}

// RequestStop implements vm.Machine: presses the ACPI power button.
func (m *machine) RequestStop(ctx context.Context) error {
	q, err := m.session(ctx)
	if err != nil {
		return fmt.Errorf("request stop: %w", err)
	}
	if err := q.execute(ctx, "system_powerdown"); err != nil {
		return fmt.Errorf("request stop of %s: %w", m.spec.ID, err)
	}
	return nil
}

// Kill implements vm.Machine: QMP quit, then SIGKILL after killGrace.
func (m *machine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.mu.Lock()
	m.killing = true
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), killGrace)
	defer cancel()
	if q, err := m.session(ctx); err == nil {
		if err := q.execute(ctx, "quit"); err != nil && !errors.Is(err, errQMPClosed) {
			m.log.Warn("qmp quit failed; killing", "err", err)
		}
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill qemu %d: %w", m.Pid(), err)
	}
	<-m.done
	return nil
}

// Done implements vm.Machine.
func (m *machine) Done() <-chan struct{} { return m.done }

// Err implements vm.Machine.
func (m *machine) Err() error {
	select {
	case <-m.done:
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.err
	default:
		return nil
	}
}

// Pid implements vm.Machine: the QEMU process.
func (m *machine) Pid() int { return m.cmd.Process.Pid }

// Pause stops the guest's CPUs (QMP stop), as a host that sleeps stops a
// vz guest; its clocks stop with it. Tests use it.
func (m *machine) Pause(ctx context.Context) error { return m.qmpCommand(ctx, "stop") }

// Resume lets a paused guest run again (QMP cont).
func (m *machine) Resume(ctx context.Context) error { return m.qmpCommand(ctx, "cont") }

func (m *machine) qmpCommand(ctx context.Context, command string) error {
	q, err := m.session(ctx)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if err := q.execute(ctx, command); err != nil {
		return fmt.Errorf("qmp %s of %s: %w", command, m.spec.ID, err)
	}
	return nil
}
