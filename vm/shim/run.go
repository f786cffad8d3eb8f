package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/fdhygiene"

	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/vm"
)

// GuestShutdown asks the guest agent, over conn (a fresh stream to it), to
// stop its processes within grace and power the machine off. It returns once
// the agent has accepted the request; the shim then waits for the machine to
// stop and kills it when the grace period ends.
type GuestShutdown func(ctx context.Context, conn net.Conn, grace time.Duration) error

// RunOption adjusts Run.
type RunOption func(*runOptions)

type runOptions struct {
	guestShutdown GuestShutdown
}

// WithGuestShutdown sets how a graceful stop asks the guest agent to shut
// down (default AgentShutdown). With nil a stop goes straight to
// Machine.RequestStop.
func WithGuestShutdown(fn GuestShutdown) RunOption {
	return func(o *runOptions) { o.guestShutdown = fn }
}

type stopRequest struct {
	kill  bool
	grace time.Duration
}

// server is one shim process: it owns one machine from start to stop.
type server struct {
	dir  string
	cfg  Config
	log  *slog.Logger
	opts runOptions

	requests chan stopRequest
	final    chan struct{} // closed once the final state is on disk
	logEnds  *logEnds      // which container logs are complete (WaitLog)
	logNames *logNames     // which log names the host registered

	mu          sync.Mutex
	state       State
	cancelStart context.CancelFunc
	proxy       *agentProxy
}

// Run is the shim's main: `vk-applevm shim --dir DIR` calls it. It boots the
// machine described in dir with the driver named in shim.json, serves
// agent.sock and shim.sock, persists container logs, and returns after the
// machine has stopped and the final state is written. The error is nil
// when the machine ran (why it stopped is in state.json) and non-nil when
// it could not be started. SIGTERM stops the machine gracefully; SIGHUP is
// ignored. ctx is handed to Driver.Start and must stay alive for the
// machine's life: pass context.Background(), not a signal context (Run
// handles signals itself).
func Run(ctx context.Context, dir string, drivers map[string]vm.Driver, opts ...RunOption) error {
	ready := takeReadyPipe()
	defer ready.close()
	// The shim lives as long as its VM: descriptors it inherited by
	// accident (a lock of a `flock` around whoever started it) must not
	// stay held that long. The ready pipe is close-on-exec by now.
	fdhygiene.CloseInherited()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("vm", filepath.Base(dir), "shimPid", os.Getpid())
	s, drv, err := newServer(dir, drivers, log, opts)
	if err != nil {
		ready.fail(err)
		log.Error("shim cannot start", "err", err)
		return err
	}
	signal.Ignore(syscall.SIGHUP)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			log.Info("signal: stopping the machine", "signal", sig.String(), "grace", s.cfg.StopGrace)
			s.request(stopRequest{grace: s.cfg.StopGrace})
		}
	}()

	apiLn, err := listenUnix(filepath.Join(dir, apiSocket))
	if err == nil {
		api := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = api.Serve(apiLn) }()
		defer s.closeAPI(api)
	}
	var m vm.Machine
	var pumpDone <-chan struct{}
	var logPort io.Closer
	if err == nil {
		m, logPort, pumpDone, err = s.boot(ctx, drv)
	}
	if err != nil {
		s.finish(err)
		ready.fail(err)
		log.Error("machine did not start", "err", err)
		return err
	}
	ready.ok()
	log.Info("machine running", "hypervisorPid", m.Pid())
	balloonCtx, stopBalloon := context.WithCancel(context.Background())
	if bm, ok := m.(vm.BalloonMachine); ok {
		s.mu.Lock()
		proxy := s.proxy
		s.mu.Unlock()
		if proxy != nil {
			go s.runBalloon(balloonCtx, bm, proxy)
		}
	}
	s.supervise(m)
	stopBalloon()
	s.teardown(m, logPort, pumpDone)
	return nil
}

func newServer(dir string, drivers map[string]vm.Driver, log *slog.Logger, opts []RunOption) (*server, vm.Driver, error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	drv := drivers[cfg.Driver]
	if drv == nil {
		return nil, nil, fmt.Errorf("no VM driver %q in this binary", cfg.Driver)
	}
	start, err := selfStartTime()
	if err != nil {
		return nil, nil, fmt.Errorf("read own start time: %w", err)
	}
	s := &server{
		dir: dir, cfg: cfg, log: log,
		requests: make(chan stopRequest, 16),
		final:    make(chan struct{}),
		logEnds:  newLogEnds(),
		logNames: newLogNames(),
		state: State{
			ID: cfg.Spec.ID, Driver: cfg.Driver, Status: StatusStarting,
			ShimPid: os.Getpid(), ShimStartTime: start,
		},
	}
	s.opts.guestShutdown = AgentShutdown
	for _, o := range opts {
		o(&s.opts)
	}
	if err := s.update(func(*State) {}); err != nil {
		return nil, nil, err
	}
	return s, drv, nil
}

// update changes the state and persists it.
func (s *server) update(change func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.state)
	if err := writeState(s.dir, s.state); err != nil {
		s.log.Error("persist state", "err", err)
		return err
	}
	return nil
}

func (s *server) snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// request queues a stop or kill. A kill while the machine is starting also
// cancels the start.
func (s *server) request(r stopRequest) {
	s.mu.Lock()
	if r.kill && s.state.Status == StatusStarting && s.cancelStart != nil {
		s.cancelStart()
	}
	s.mu.Unlock()
	select {
	case s.requests <- r:
	default: // a full queue already holds enough requests to act on
	}
}

// boot starts the machine and takes over its console ports.
func (s *server) boot(ctx context.Context, drv vm.Driver) (vm.Machine, io.Closer, <-chan struct{}, error) {
	// The start context stays alive while the machine runs (a backend may
	// tie the hypervisor to it); teardown cancels it. A kill request while
	// starting cancels it early.
	startCtx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancelStart = cancel
	s.mu.Unlock()
	spec, err := s.cableNICs(startCtx, s.cfg.Spec)
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("start %s machine: %w", drv.Name(), err)
	}
	m, err := drv.Start(startCtx, spec, filepath.Join(s.dir, backendDir))
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("start %s machine: %w", drv.Name(), err)
	}
	logPort, pumpDone, err := s.takePorts(startCtx, m)
	if err != nil {
		defer cancel()
		_ = m.Kill()
		select {
		case <-m.Done():
		case <-time.After(10 * time.Second):
		}
		return nil, nil, nil, err
	}
	hvStart, _ := processStartTime(m.Pid())
	err = s.update(func(st *State) {
		st.Status, st.StartedAt = StatusRunning, time.Now()
		st.HypervisorPid, st.HypervisorStartTime = m.Pid(), hvStart
	})
	return m, logPort, pumpDone, err
}

func (s *server) takePorts(ctx context.Context, m vm.Machine) (io.Closer, <-chan struct{}, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PortTimeout)
	defer cancel()
	var logPort io.Closer
	var pumpDone chan struct{}
	for _, name := range s.cfg.Spec.Ports {
		switch name {
		case vm.AgentPort:
			port, err := m.Port(ctx, name)
			if err != nil {
				return nil, nil, fmt.Errorf("open port %s: %w", name, err)
			}
			// The Host discards whatever precedes the guest's hello and
			// starts a fresh session at each one (agent/transport).
			host := transport.Serve(port, s.log.With("port", name))
			ln, err := listenUnix(filepath.Join(s.dir, agentSock))
			if err != nil {
				host.Close()
				return nil, nil, err
			}
			p := &agentProxy{host: host, log: s.log.With("port", name)}
			go p.serve(ln)
			go func() {
				<-host.Done()
				ln.Close()
				if st := s.snapshot(); st.Status == StatusRunning {
					s.log.Warn("agent port closed while the machine runs; agent.sock closed", "port", name)
				}
			}()
			s.mu.Lock()
			s.proxy = p
			s.mu.Unlock()
		case vm.LogPort:
			port, err := m.Port(ctx, name)
			if err != nil {
				return nil, nil, fmt.Errorf("open port %s: %w", name, err)
			}
			logPort, pumpDone = port, make(chan struct{})
			go func() {
				defer close(pumpDone)
				pumpLogs(port, newLogSet(s.cfg, s.logEnds, s.logNames, s.log), s.log.With("port", name))
			}()
		}
	}
	return logPort, pumpDone, nil
}

// streamFlushTimeout bounds how long a stopped machine's agent streams
// may take to hand their last bytes to the clients: they are in the shim's
// memory already, so only a client that does not read takes longer.
const streamFlushTimeout = 2 * time.Second

// portDrainTimeout bounds the wait for a stopped machine's agent port to
// reach its end (the backend closes it when the hypervisor exits).
const portDrainTimeout = 2 * time.Second

// teardown runs after the machine has stopped: it drains the log port,
// closes the agent side and records the final state.
func (s *server) teardown(m vm.Machine, logPort io.Closer, pumpDone <-chan struct{}) {
	s.mu.Lock()
	proxy := s.proxy
	s.mu.Unlock()
	if proxy != nil {
		proxy.close(portDrainTimeout, streamFlushTimeout)
	}
	_ = os.Remove(filepath.Join(s.dir, agentSock))
	if pumpDone != nil {
		// The backend closes the port when the hypervisor exits; give the
		// pump time to persist what was still in flight, then force it.
		select {
		case <-pumpDone:
		case <-time.After(2 * time.Second):
			logPort.Close()
			<-pumpDone
		}
	}
	s.finish(m.Err())
	s.mu.Lock()
	s.cancelStart()
	s.mu.Unlock()
	s.log.Info("machine stopped", "err", m.Err())
}

// finish records the final state and releases the waiters.
func (s *server) finish(cause error) {
	_ = s.update(func(st *State) {
		st.Status, st.StoppedAt = StatusStopped, time.Now()
		if cause != nil {
			st.Error = cause.Error()
		}
	})
	// Without a log port (or a machine that never started) no log can
	// grow; with one, the pump has already said so.
	s.logEnds.closePort()
	close(s.final)
}

func (s *server) closeAPI(api *http.Server) {
	// Shutdown lets pending /wait calls deliver the final state.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = api.Shutdown(ctx)
	_ = os.Remove(filepath.Join(s.dir, apiSocket))
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}
