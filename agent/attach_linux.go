package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// Attach streams a process's output out and its input in; see the proto.
func (s *Server) Attach(stream grpcserver.Bidi[api.AttachRequest, api.AttachResponse]) error {
	defer s.streams.add()()
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("attach: read first message: %w", err)
	}
	p, err := s.process(first.GetContainerId(), first.GetProcessId())
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	// A logged process keeps output only for its first attacher: a later
	// one arriving after the exit would get nothing but the exit status,
	// and would not know to read the log instead.
	if p.out.logs != nil && p.hasExited() && p.out.attachedBefore() {
		return fmt.Errorf("attach to %s: it has exited; its output is in log %q: %w", p.id, p.out.logName, ErrFailedPrecondition)
	}
	a, pending := p.out.attach(first.GetWantStdout(), first.GetWantStderr())
	defer p.out.detach(a)
	if err := stream.Send(&api.AttachResponse{}); err != nil {
		return fmt.Errorf("attach to %s: confirm: %w", p.id, err)
	}
	if err := p.input(first); err != nil {
		s.log.Warn("attach input", "process", p.id, "err", err)
	}
	// Input runs until the client stops sending or the call ends; it never
	// ends the call by itself (a client may close its sending side and keep
	// reading).
	s.goSafe("attach input "+p.id, func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if err := p.input(m); err != nil {
				s.log.Warn("attach input", "process", p.id, "err", err)
			}
		}
	})
	send := func(c chunk) error {
		resp := &api.AttachResponse{Stream: api.AttachResponse_STDOUT, Data: c.data}
		if c.stream == logframe.Stderr {
			resp.Stream = api.AttachResponse_STDERR
		}
		return stream.Send(resp)
	}
	for _, c := range pending {
		if err := send(c); err != nil {
			return fmt.Errorf("attach to %s: send output: %w", p.id, err)
		}
	}
	if err := drain(ctx, a, p.settled, send); err != nil {
		return fmt.Errorf("attach to %s: %w", p.id, err)
	}
	st, err := p.exitStatus(ctx)
	if err != nil {
		return fmt.Errorf("attach to %s: wait for exit: %w", p.id, err)
	}
	if err := stream.Send(&api.AttachResponse{Exit: st}); err != nil {
		return fmt.Errorf("attach to %s: send exit status: %w", p.id, err)
	}
	return nil
}

// drain sends the attacher's output until the hub closes its channel, or,
// once settled (the process exited and its output drain timed out), what is
// already queued.
func drain(ctx context.Context, a *attacher, settled <-chan struct{}, send func(chunk) error) error {
	for {
		select {
		case c, ok := <-a.ch:
			if !ok {
				return nil
			}
			if err := send(c); err != nil {
				return fmt.Errorf("send output: %w", err)
			}
		case <-settled:
			for {
				select {
				case c, ok := <-a.ch:
					if !ok {
						return nil
					}
					if err := send(c); err != nil {
						return fmt.Errorf("send output: %w", err)
					}
				default:
					return nil
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// input applies one attach message: stdin data, end of stdin, resize.
func (p *process) input(m *api.AttachRequest) error {
	var errs []error
	if len(m.GetStdin()) > 0 {
		errs = append(errs, p.writeStdin(m.GetStdin()))
	}
	if m.GetCloseStdin() {
		errs = append(errs, p.closeStdin())
	}
	if m.GetRows() > 0 && m.GetCols() > 0 {
		errs = append(errs, p.resize(m.GetRows(), m.GetCols()))
	}
	return errors.Join(errs...)
}

// Wait blocks until the process exits.
func (s *Server) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	p, err := s.process(req.GetContainerId(), req.GetProcessId())
	if err != nil {
		return nil, err
	}
	st, err := p.exitStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", p.id, err)
	}
	return &api.WaitResponse{Exit: st, LogName: p.out.logName}, nil
}

// Signal signals one process or the whole container.
func (s *Server) Signal(ctx context.Context, req *api.SignalRequest) (*api.SignalResponse, error) {
	sig := syscall.Signal(req.GetSignal())
	if sig <= 0 || sig > 64 {
		return nil, fmt.Errorf("signal %d: %w", sig, ErrInvalidArgument)
	}
	if req.GetAll() {
		c, err := s.container(req.GetContainerId())
		if err != nil {
			return nil, err
		}
		if err := s.signalContainer(c, sig); err != nil {
			return nil, err
		}
		return &api.SignalResponse{}, nil
	}
	p, err := s.process(req.GetContainerId(), req.GetProcessId())
	if err != nil {
		return nil, err
	}
	if err := p.signal(sig); err != nil {
		return nil, err
	}
	return &api.SignalResponse{}, nil
}

// signalContainer signals every process of c: through its cgroup, which
// also holds the processes' own children, or the tracked processes.
func (s *Server) signalContainer(c *container, sig syscall.Signal) error {
	if c.cgroup != nil {
		return c.cgroup.signal(sig)
	}
	s.mu.Lock()
	procs := make([]*process, 0, len(c.procs))
	for _, p := range c.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if p.isRunning() {
			errs = append(errs, p.signal(sig))
		}
	}
	return errors.Join(errs...)
}

// ResizeTTY sets a terminal's size.
func (s *Server) ResizeTTY(ctx context.Context, req *api.ResizeTTYRequest) (*api.ResizeTTYResponse, error) {
	p, err := s.process(req.GetContainerId(), req.GetProcessId())
	if err != nil {
		return nil, err
	}
	if req.GetRows() == 0 || req.GetCols() == 0 {
		return nil, fmt.Errorf("resize %s: rows and cols must be positive: %w", p.id, ErrInvalidArgument)
	}
	if err := p.resize(req.GetRows(), req.GetCols()); err != nil {
		return nil, err
	}
	return &api.ResizeTTYResponse{}, nil
}

// CloseStdin ends a process's input.
func (s *Server) CloseStdin(ctx context.Context, req *api.CloseStdinRequest) (*api.CloseStdinResponse, error) {
	p, err := s.process(req.GetContainerId(), req.GetProcessId())
	if err != nil {
		return nil, err
	}
	if err := p.closeStdin(); err != nil {
		return nil, fmt.Errorf("close stdin of %s: %w", p.id, err)
	}
	return &api.CloseStdinResponse{}, nil
}

// DeleteProcess forgets an exited or never-started process.
func (s *Server) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest) (*api.DeleteProcessResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[req.GetContainerId()]
	if !ok {
		return nil, fmt.Errorf("delete process: container %q: %w", req.GetContainerId(), ErrNotFound)
	}
	p, ok := c.procs[req.GetProcessId()]
	if !ok {
		return nil, fmt.Errorf("delete process %q: %w", req.GetProcessId(), ErrNotFound)
	}
	if p.isRunning() {
		return nil, fmt.Errorf("delete process %s: still running: %w", p.id, ErrFailedPrecondition)
	}
	delete(c.procs, p.id)
	return &api.DeleteProcessResponse{}, nil
}
