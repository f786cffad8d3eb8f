package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

type procState int

const (
	procCreated procState = iota
	procRunning
	procExited
)

// process is one process of a container, from CreateProcess to
// DeleteProcess.
type process struct {
	id       string
	c        *container
	exe      string // resolved path inside the container
	argv     []string
	env      []string
	cwd      string
	cred     *syscall.Credential
	terminal bool
	stdin    bool
	out      *outputHub

	mu          sync.Mutex
	state       procState
	pid         int
	pidfd       int
	rows, cols  uint32
	started     time.Time
	exit        *api.ExitStatus
	stdinW      *os.File // stdin pipe, or the pty master with terminal
	pty         *os.File // pty master
	stdinClosed bool
	oomBefore   uint64
	// leader: the process was started in new namespaces, as the
	// container's init; its exit ends every process of the container.
	leader bool
	pipes  []*outPipe // its output's read ends, from start on

	exited  chan struct{} // closed when the exit status is known
	settled chan struct{} // closed when output ended (or drain timed out) after exit
}

func (p *process) isRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == procRunning
}

func (p *process) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == procExited
}

// CreateProcess resolves the command and user inside the container.
func (s *Server) CreateProcess(ctx context.Context, req *api.CreateProcessRequest) (*api.CreateProcessResponse, error) {
	if err := checkID("process", req.GetProcessId()); err != nil {
		return nil, err
	}
	if len(req.GetArgs()) == 0 {
		return nil, fmt.Errorf("create process %s: no command: %w", req.GetProcessId(), ErrInvalidArgument)
	}
	if s.shuttingDown.Load() {
		return nil, fmt.Errorf("create process %s: agent is shutting down: %w", req.GetProcessId(), ErrFailedPrecondition)
	}
	if n := req.GetLogName(); len(n) > logframe.MaxName {
		return nil, fmt.Errorf("create process %s: log name longer than %d: %w", req.GetProcessId(), logframe.MaxName, ErrInvalidArgument)
	}
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	cwd := req.GetCwd()
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("create process %s: cwd %q is not absolute: %w", req.GetProcessId(), cwd, ErrInvalidArgument)
	}
	env := append([]string(nil), req.GetEnv()...)
	pathEnv, ok := envValue(env, "PATH")
	if !ok {
		pathEnv = defaultPath
		env = append(env, "PATH="+defaultPath)
	}
	passwd, _ := readFileInRoot(c.rootfs, "/etc/passwd", 4<<20)
	uid, gid := req.GetUid(), req.GetGid()
	if spec := req.GetUser(); spec != "" {
		group, _ := readFileInRoot(c.rootfs, "/etc/group", 4<<20)
		var err error
		if uid, gid, err = resolveUser(spec, passwd, group); err != nil {
			return nil, fmt.Errorf("create process %s: %v: %w", req.GetProcessId(), err, ErrInvalidArgument)
		}
	}
	user, known := findUser(bytes.NewReader(passwd), uid)
	if _, ok := envValue(env, "HOME"); !ok {
		home := "/"
		if known && user.home != "" {
			home = user.home
		}
		env = append(env, "HOME="+home)
	}
	var groups []uint32
	if known {
		group, _ := readFileInRoot(c.rootfs, "/etc/group", 4<<20)
		groups = supplementaryGroups(bytes.NewReader(group), user.name)
	}
	exe, err := lookPathInRoot(c.rootfs, req.GetArgs()[0], pathEnv, cwd)
	if err != nil {
		return nil, err
	}
	p := &process{
		id:       req.GetProcessId(),
		c:        c,
		exe:      exe,
		argv:     append([]string(nil), req.GetArgs()...),
		env:      env,
		cwd:      cwd,
		terminal: req.GetTerminal(),
		stdin:    req.GetStdin(),
		rows:     req.GetRows(),
		cols:     req.GetCols(),
		cred: &syscall.Credential{
			Uid:    uid,
			Gid:    gid,
			Groups: mergeGroups(gid, groups, req.GetAdditionalGids(), c.sec.fsGroups()),
		},
		out:     newOutputHub(req.GetLogName(), s.logs, s.cfg.PendingOutputBytes),
		pidfd:   -1,
		exited:  make(chan struct{}),
		settled: make(chan struct{}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.containers[c.id] != c {
		return nil, fmt.Errorf("create process %s: container %s was recreated: %w", p.id, c.id, ErrFailedPrecondition)
	}
	if _, dup := c.procs[p.id]; dup {
		return nil, fmt.Errorf("create process %s in %s: already exists: %w", p.id, c.id, ErrFailedPrecondition)
	}
	c.procs[p.id] = p
	return &api.CreateProcessResponse{}, nil
}

// StartProcess runs the process in the container's namespaces.
func (s *Server) StartProcess(ctx context.Context, req *api.StartProcessRequest) (*api.StartProcessResponse, error) {
	if s.shuttingDown.Load() {
		return nil, fmt.Errorf("start process %s: agent is shutting down: %w", req.GetProcessId(), ErrFailedPrecondition)
	}
	p, err := s.process(req.GetContainerId(), req.GetProcessId())
	if err != nil {
		return nil, err
	}
	if err := s.start(p); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &api.StartProcessResponse{Pid: int32(p.pid), StartedUnixNs: p.started.UnixNano()}, nil
}

func (s *Server) start(p *process) error {
	p.c.startMu.Lock()
	defer p.c.startMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != procCreated {
		return fmt.Errorf("start process %s: already started: %w", p.id, ErrFailedPrecondition)
	}
	if err := mkdirAllInRoot(p.c.rootfs, p.cwd, 0o755); err != nil {
		return fmt.Errorf("start process %s: create cwd: %w", p.id, err)
	}
	sio, err := s.openStdio(p)
	if err != nil {
		return fmt.Errorf("start process %s: %w", p.id, err)
	}
	defer func() {
		for _, f := range sio.closeAfterStart {
			f.Close()
		}
	}()
	// The first process of the container (none of it running) gets new
	// namespaces; the others join the first one's.
	initPidfd := -1
	if first := p.c.first; first != nil && first != p {
		initPidfd = first.dupPidfd()
	}
	newNS := initPidfd < 0
	if !newNS {
		defer unix.Close(initPidfd)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start process %s: %w", p.id, err)
	}
	defer cfgW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return fmt.Errorf("start process %s: %w", p.id, err)
	}
	defer statusR.Close()
	sys := &syscall.SysProcAttr{
		// Every process leads its own session: terminal signals of one
		// exec never reach another.
		Setsid:  true,
		Setctty: p.terminal,
		Ctty:    0,
		PidFD:   &p.pidfd,
	}
	if newNS {
		sys.Cloneflags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	}
	cg := p.c.cgroup
	if cg != nil {
		fd, err := cg.openDir()
		if err != nil {
			cfgR.Close()
			statusW.Close()
			return fmt.Errorf("start process %s: %w", p.id, err)
		}
		defer unix.Close(fd)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
		p.oomBefore = cg.oomKills()
	}
	fds := make([]uintptr, 0, len(sio.child)+3)
	for _, f := range sio.child {
		fds = append(fds, f.Fd())
	}
	fds = append(fds, cfgR.Fd(), statusW.Fd())
	if !newNS {
		fds = append(fds, uintptr(initPidfd))
	}
	attr := &syscall.ProcAttr{Dir: "/", Files: fds, Sys: sys}
	spawn := func() (int, error) {
		return syscall.ForkExec(s.cfg.InitPath, []string{InitArg0}, attr)
	}
	if !newNS {
		join := spawn
		spawn = func() (int, error) { return inNamespacesOf(initPidfd, join) }
	}
	pid, err := s.cfg.Reaper.Start(spawn, func(ws syscall.WaitStatus) { s.exited(p, ws) })
	runtime.KeepAlive(sio.child)
	cfgR.Close()
	statusW.Close()
	if err == nil {
		err = handshake(cfgW, statusR, p.initConfigFor(newNS, p.c.hostname, cg != nil))
		if err != nil {
			// The starter failed before the exec: it exits, and the reaper
			// records that; this start is a failure either way.
			_ = unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
		}
	}
	if err != nil {
		for _, f := range sio.closeOnStartError {
			f.Close()
		}
		if errors.Is(err, unix.ENOMEM) && !newNS {
			// Forking into a PID namespace whose init has exited.
			err = fmt.Errorf("%w: the container's first process has exited: %w", err, ErrFailedPrecondition)
		}
		err = fmt.Errorf("start process %s: exec %s: %w", p.id, p.exe, err)
		switch {
		case errors.Is(err, syscall.ENOENT):
			return fmt.Errorf("%w: %w", err, ErrExecutableNotFound)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.ENOEXEC):
			return fmt.Errorf("%w: %w", err, ErrNotExecutable)
		}
		return err
	}
	if newNS {
		p.c.first = p
	}
	p.pid, p.started, p.state = pid, time.Now(), procRunning
	p.leader = newNS
	p.stdinW, p.pty = sio.stdinW, sio.pty
	s.pumpOutput(p, sio.stdoutR, sio.stderrR)
	s.firstProcessStarted()
	s.log.Info("process started", "container", p.c.id, "process", p.id, "pid", pid, "exe", p.exe)
	return nil
}

// dupPidfd returns a new descriptor of p's pidfd while p runs, else -1.
func (p *process) dupPidfd() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != procRunning || p.pidfd < 0 {
		return -1
	}
	fd, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// handshake sends the starter its configuration and waits until it has
// executed the command (the status pipe closes empty) or failed.
func handshake(cfgW, statusR *os.File, cfg *initConfig) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode the process's configuration: %w", err)
	}
	_, err = cfgW.Write(data)
	if cerr := cfgW.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("send the process's configuration: %w", err)
	}
	msg, err := io.ReadAll(io.LimitReader(statusR, 64<<10))
	switch {
	case err != nil:
		return fmt.Errorf("read the starter's status: %w", err)
	case len(msg) == 0:
		return nil
	case len(msg) < 4:
		return fmt.Errorf("the starter's status is truncated")
	}
	return &starterError{errno: syscall.Errno(binary.LittleEndian.Uint32(msg)), msg: string(msg[4:])}
}

// starterError is the starter's failure; it matches its errno.
type starterError struct {
	errno syscall.Errno
	msg   string
}

func (e *starterError) Error() string { return e.msg }
func (e *starterError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// exited records the exit status; the reaper calls it.
func (s *Server) exited(p *process, ws syscall.WaitStatus) {
	// The time is read under the lock: start holds it until it has
	// recorded the start time, and a process that exits at once (before
	// start's handshake returns) must not finish before it started.
	p.mu.Lock()
	now := time.Now()
	st := exitStatusOf(ws, func() bool { return p.c.cgroup != nil && p.c.cgroup.oomKills() > p.oomBefore })
	st.StartedUnixNs, st.FinishedUnixNs = p.started.UnixNano(), now.UnixNano()
	p.exit, p.state = st, procExited
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	if p.stdinW != nil && p.stdinW != p.pty {
		p.stdinW.Close()
	}
	p.stdinW = nil
	leader, pipes := p.leader, p.pipes
	p.mu.Unlock()
	close(p.exited)
	s.log.Info("process exited", "container", p.c.id, "process", p.id, "pid", p.pid, "code", st.ExitCode, "signal", st.Signal, "oom", st.OomKilled)
	s.goSafe("settle "+p.id, func() {
		// The drain timeout is for a child that outlives the process and
		// keeps its pipes open. The container's init has none: the kernel
		// kills every other process of its PID namespace, and waits for
		// them, before the init's exit is reported, so its pipes end as
		// soon as what is in them has been read. Its output is waited for
		// however long that takes (a loaded guest, a host slow to read the
		// log port): a timer here would end the log before its last lines
		// and lose them.
		var timeout <-chan time.Time
		if !leader {
			// Another process's own output is all in its pipes by now
			// (or read): that is waited for as for the init, and only
			// what a surviving child writes later gets the timeout.
			for _, o := range pipes {
				if target, ok := o.backlog(); ok {
					o.waitHanded(s.ctx, target)
				}
			}
			t := time.NewTimer(s.cfg.DrainTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-p.out.done:
		case <-timeout:
		case <-s.ctx.Done():
		}
		// The end frame goes before settled is closed, so whoever waits
		// for settled (Attach, Shutdown) finds it queued behind the
		// output.
		if err := p.out.endLog(s.ctx); err != nil {
			s.log.Warn("end of the process's log", "process", p.id, "err", err)
		}
		close(p.settled)
	})
}

// signal sends sig through the process's pidfd, which cannot hit a
// recycled pid. Signalling an exited process does nothing.
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case procCreated:
		return fmt.Errorf("signal process %s: not started: %w", p.id, ErrFailedPrecondition)
	case procExited:
		return nil
	}
	var err error
	if p.pidfd >= 0 {
		err = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	} else {
		err = syscall.Kill(p.pid, sig)
	}
	if err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal %d to process %s: %w", sig, p.id, err)
	}
	return nil
}

// writeStdin feeds the process; data after CloseStdin or exit is dropped.
func (p *process) writeStdin(b []byte) error {
	p.mu.Lock()
	w := p.stdinW
	closed := p.stdinClosed
	p.mu.Unlock()
	if w == nil || closed {
		return nil
	}
	if _, err := w.Write(b); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("write stdin of %s: %w", p.id, err)
	}
	return nil
}

// closeStdin ends the process's input. A terminal cannot be closed without
// losing its output, so it gets the end-of-file character (^D) instead.
func (p *process) closeStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinClosed || p.stdinW == nil {
		p.stdinClosed = true
		return nil
	}
	p.stdinClosed = true
	if p.stdinW == p.pty {
		_, err := p.pty.Write([]byte{4})
		return err
	}
	return p.stdinW.Close()
}

func (p *process) resize(rows, cols uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.terminal {
		return fmt.Errorf("resize process %s: it has no terminal: %w", p.id, ErrFailedPrecondition)
	}
	switch {
	case p.state == procExited:
		return nil
	case p.pty == nil:
		p.rows, p.cols = rows, cols // applied at start
		return nil
	}
	return setWinsize(p.pty, rows, cols)
}

// exitStatus waits for the exit.
func (p *process) exitStatus(ctx context.Context) (*api.ExitStatus, error) {
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit, nil
}
