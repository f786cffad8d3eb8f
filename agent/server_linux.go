package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
)

// Config configures a Server. Paths default to the guest's.
type Config struct {
	// Version is reported by Info.
	Version string
	Log     *slog.Logger
	// StateDir holds containers/<id>/ (mount points, writable layer,
	// volumes) and etc/ (hosts, resolv.conf). Default /run/vkav.
	StateDir string
	// SysBlockDir and DevDir locate disks by serial (/sys/block, /dev).
	SysBlockDir string
	DevDir      string
	// CgroupRoot is the cgroup2 mount (default /sys/fs/cgroup). With
	// NoCgroups, containers get no cgroup (limits are refused, Stats reports
	// no container numbers).
	CgroupRoot string
	NoCgroups  bool
	// ProcSysDir is where Setup writes sysctls (default /proc/sys).
	ProcSysDir string
	// InitPath is the agent binary, executed again to start each container
	// process (MaybeContainerInit); default /proc/self/exe.
	InitPath string
	// ProcNetDir is where Listeners reads sockets (default /proc/net).
	ProcNetDir string
	// Reaper starts and waits for every process; required.
	Reaper *Reaper
	// Modules reports kernel module loading; CreateContainer waits for it.
	// Nil means there is nothing to wait for.
	Modules ModuleStatus
	// TemplateGuest: the guest was booted as a template (TemplateEnv) and
	// may run resumed in another machine, whose NICs Setup finds by order
	// rather than by MAC (configureNetwork).
	TemplateGuest bool
	// ReseedRandom, if set, runs first in every Setup: a guest resumed
	// from a template gets its own random numbers there (ReseedRandom).
	ReseedRandom func() error
	// LogSink receives the framed output of logged processes (the
	// "vkav.log" port). Nil discards it.
	LogSink io.Writer
	// LogQueueBytes and PendingOutputBytes bound buffered output
	// (defaults DefaultLogQueueBytes, DefaultPendingOutputBytes).
	LogQueueBytes      int
	PendingOutputBytes int
	// DiskWait bounds the wait for a disk serial to appear (default 10 s).
	DiskWait time.Duration
	// DrainTimeout is how long Attach and the log wait, once a process
	// other than the container's init has exited and what it wrote has
	// been delivered, for its output pipes to close (a daemonized child
	// may hold them open forever); the init's output is always read to
	// its end. Default 2 s.
	DrainTimeout time.Duration
	// SetClock sets the wall clock (default settimeofday(2)).
	SetClock func(time.Time) error
	// ClockSet, if set, runs in the background after Setup has set the
	// clock to the host's time (the RTC keeper calibrates then).
	ClockSet func(ctx context.Context)
	// PowerOff runs after Shutdown has stopped every process and replied
	// (PID 1: sync, unmount, reboot(2)). Nil does nothing.
	PowerOff func()
	// PowerButton delivers presses of the guest's power button (the
	// host's Machine.RequestStop); the first starts Shutdown. Nil: none.
	PowerButton <-chan struct{}
	// MemoryTrimDelay is how long after the last request the agent hands
	// its free heap back to the guest (default DefaultMemoryTrimDelay;
	// negative: never, beyond what Go's scavenger does anyway).
	MemoryTrimDelay time.Duration
}

// maxRequestBytes bounds one request message.
const maxRequestBytes = 32 << 20

// ModuleStatus is the part of ModuleLoader the server reads.
type ModuleStatus interface {
	Loaded() []string
	Done() <-chan struct{}
}

func (c *Config) setDefaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.StateDir == "" {
		c.StateDir = "/run/vkav"
	}
	if c.SysBlockDir == "" {
		c.SysBlockDir = "/sys/block"
	}
	if c.DevDir == "" {
		c.DevDir = "/dev"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.InitPath == "" {
		c.InitPath = "/proc/self/exe"
	}
	if c.ProcSysDir == "" {
		c.ProcSysDir = "/proc/sys"
	}
	if c.ProcNetDir == "" {
		c.ProcNetDir = "/proc/net"
	}
	if c.LogQueueBytes == 0 {
		c.LogQueueBytes = DefaultLogQueueBytes
	}
	if c.PendingOutputBytes == 0 {
		c.PendingOutputBytes = DefaultPendingOutputBytes
	}
	if c.DiskWait == 0 {
		c.DiskWait = 10 * time.Second
	}
	if c.MemoryTrimDelay == 0 {
		c.MemoryTrimDelay = DefaultMemoryTrimDelay
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Second
	}
	if c.SetClock == nil {
		c.SetClock = SetClock
	}
}

// Server implements the Agent service of agent/api/agentgrpc (register
// lists its methods).
type Server struct {
	cfg         Config
	log         *slog.Logger
	ctx         context.Context // the server's lifetime
	cancel      context.CancelFunc
	logs        *LogQueue
	logDone     chan struct{}
	streams     *inflight // Attach and Forward calls in progress
	readyUptime time.Duration
	trim        *idleTrimmer

	setupDone    atomic.Bool
	shuttingDown atomic.Bool
	createMu     sync.Mutex // serialises CreateContainer and teardown
	// releaseModules schedules the deferred modules' release once.
	releaseModules sync.Once

	relays *relaySet

	mu         sync.Mutex
	hostname   string
	containers map[string]*container
}

// New returns a server; it starts writing the log sink at once.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Reaper == nil {
		return nil, errors.New("agent config: a Reaper is required")
	}
	if !cfg.NoCgroups && !isCgroup2(cfg.CgroupRoot) {
		return nil, fmt.Errorf("agent config: %s is not a cgroup2 mount (set NoCgroups to run without cgroups)", cfg.CgroupRoot)
	}
	for _, d := range []string{filepath.Join(cfg.StateDir, "containers"), filepath.Join(cfg.StateDir, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create agent state dir: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:         cfg,
		log:         cfg.Log,
		ctx:         ctx,
		cancel:      cancel,
		logs:        NewLogQueue(cfg.LogQueueBytes),
		logDone:     make(chan struct{}),
		streams:     newInflight(),
		readyUptime: uptime(),
		trim:        newIdleTrimmer(cfg.MemoryTrimDelay, debug.FreeOSMemory),
		containers:  map[string]*container{},
		relays:      &relaySet{log: cfg.Log, ln: map[uint16]net.Listener{}},
	}
	sink := cfg.LogSink
	if sink == nil {
		sink = io.Discard
	}
	go func() {
		defer close(s.logDone)
		s.logs.Run(ctx, sink, s.log)
	}()
	if cfg.PowerButton != nil {
		s.goSafe("power button", func() { s.handlePowerButton(cfg.PowerButton) })
	}
	return s, nil
}

// Serve answers gRPC on every connection l accepts until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	gs := grpcserver.New(grpcserver.Options{
		Log:       s.log,
		Intercept: s.boundary,
		// Files volumes arrive whole in CreateContainer and WriteFiles; a
		// projected volume may exceed gRPC's default 4 MiB.
		MaxRecvMsgSize: maxRequestBytes,
	})
	s.register(gs)
	stop := context.AfterFunc(ctx, gs.Stop)
	defer stop()
	if err := gs.Serve(l); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serve agent API: %w", err)
	}
	return nil
}

// agentService prefixes the full method names of vkav.agent.v1.Agent
// (agent/api/agentgrpc/agent_service.proto).
const agentService = "/vkav.agent.v1.Agent/"

// register adds the Agent service's methods to gs; a test checks them
// against the service's descriptor.
func (s *Server) register(gs *grpcserver.Server) {
	grpcserver.HandleUnary(gs, agentService+"Info", s.Info)
	grpcserver.HandleUnary(gs, agentService+"Setup", s.Setup)
	grpcserver.HandleUnary(gs, agentService+"CreateContainer", s.CreateContainer)
	grpcserver.HandleUnary(gs, agentService+"WriteFiles", s.WriteFiles)
	grpcserver.HandleUnary(gs, agentService+"ReadFile", s.ReadFile)
	grpcserver.HandleUnary(gs, agentService+"CreateProcess", s.CreateProcess)
	grpcserver.HandleUnary(gs, agentService+"StartProcess", s.StartProcess)
	grpcserver.HandleBidi(gs, agentService+"Attach", s.Attach)
	grpcserver.HandleUnary(gs, agentService+"Wait", s.Wait)
	grpcserver.HandleUnary(gs, agentService+"Signal", s.Signal)
	grpcserver.HandleUnary(gs, agentService+"ResizeTTY", s.ResizeTTY)
	grpcserver.HandleUnary(gs, agentService+"CloseStdin", s.CloseStdin)
	grpcserver.HandleUnary(gs, agentService+"DeleteProcess", s.DeleteProcess)
	grpcserver.HandleUnary(gs, agentService+"Stats", s.Stats)
	grpcserver.HandleBidi(gs, agentService+"Forward", s.Forward)
	grpcserver.HandleUnary(gs, agentService+"Listeners", s.Listeners)
	grpcserver.HandleUnary(gs, agentService+"SetRelays", s.SetRelays)
	grpcserver.HandleUnary(gs, agentService+"Shutdown", s.Shutdown)
}

// boundary wraps every call: panics become Internal errors (a panic in
// PID 1 would panic the kernel), errors become gRPC codes, and the call
// counts as activity for the memory trimmer.
func (s *Server) boundary(_ context.Context, method string, call func() error) (err error) {
	s.trim.poke()
	defer s.trim.poke()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%s: internal error: %v", method, r)
		}
		if err != nil {
			s.log.Debug("request failed", "method", method, "err", err)
		}
		err = grpcError(err)
	}()
	return call()
}

// goSafe runs f in a goroutine that cannot crash the agent.
func (s *Server) goSafe(name string, f func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in goroutine", "goroutine", name, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		f()
	}()
}

// validID reports whether id is 1-64 characters of [A-Za-z0-9_.-].
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func checkID(kind, id string) error {
	if !validID(id) || id == "." || id == ".." {
		return fmt.Errorf("%s id %q must be 1-64 characters of [A-Za-z0-9_.-]: %w", kind, id, ErrInvalidArgument)
	}
	return nil
}

func (s *Server) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, ErrNotFound)
	}
	return c, nil
}

func (s *Server) process(containerID, processID string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[containerID]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", containerID, ErrNotFound)
	}
	p, ok := c.procs[processID]
	if !ok {
		return nil, fmt.Errorf("process %q in container %q: %w", processID, containerID, ErrNotFound)
	}
	return p, nil
}

// Close stops every process, unmounts the containers and stops the log
// writer. It is the teardown for tests and for a non-PID-1 agent; PID 1
// powers off instead.
func (s *Server) Close(ctx context.Context) error {
	s.shuttingDown.Store(true)
	err := s.stopAll(ctx, 0)
	s.createMu.Lock()
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	clear(s.containers)
	s.mu.Unlock()
	for _, c := range cs {
		err = errors.Join(err, c.destroy())
	}
	s.createMu.Unlock()
	s.logs.Close()
	select {
	case <-s.logDone:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("flush container logs: %w", ctx.Err()))
	}
	s.trim.stop()
	s.cancel()
	return err
}

// waitModules blocks until the kernel modules are loaded (devices they
// drive may appear only then): the named ones when the loader can tell
// (ModuleWaiter), else all of them. It does not wait for the power button
// search: the host stops the guest through the agent (vm/shim), the button
// is QEMU's fallback, and vz on Apple silicon provides none, so waiting
// for the search to give up would only delay every container there.
//
// Naming the modules matters for the start of a container: under TCG the
// modules it does not need (vsock, the entropy device, the power button,
// virtio-fs without shares) took longer to load than the container's own
// setup, and the first CreateContainer waited for all of them.
func (s *Server) waitModules(ctx context.Context, what string, names ...string) error {
	m := s.cfg.Modules
	if m == nil {
		return nil
	}
	var waits []<-chan struct{}
	if r, ok := m.(ModuleReleaser); ok && len(names) == 0 {
		r.Release() // all of them: the deferred ones too
	}
	if mw, ok := m.(ModuleWaiter); ok && len(names) > 0 {
		for _, name := range names {
			waits = append(waits, mw.Tried(name))
		}
	} else {
		waits = append(waits, m.Done())
	}
	for _, ch := range waits {
		select {
		case <-ch:
		case <-m.Done():
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for kernel modules: %w", what, ctx.Err())
		}
	}
	return nil
}

// ModuleReleaser is a ModuleStatus that holds back modules no container
// start needs until released (ModuleLoader.Defer).
type ModuleReleaser interface {
	Release()
}

// deferredModulesDelay is how long the first process of a container runs
// before the deferred modules load: its start-up has the vCPU to itself,
// and `run --rm` of a short command ends before they load at all.
const deferredModulesDelay = time.Second

// firstProcessStarted releases the deferred modules deferredModulesDelay
// after the first process of any container started.
func (s *Server) firstProcessStarted() {
	r, ok := s.cfg.Modules.(ModuleReleaser)
	if !ok {
		return
	}
	s.releaseModules.Do(func() { time.AfterFunc(deferredModulesDelay, r.Release) })
}

// ModuleWaiter is a ModuleStatus that tells when one module has been
// tried (ModuleLoader).
type ModuleWaiter interface {
	Tried(name string) <-chan struct{}
}
