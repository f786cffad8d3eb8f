package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

const (
	// defaultGracePeriod is the SIGTERM-to-SIGKILL time when the request
	// gives none (the kubelet's default terminationGracePeriodSeconds is
	// 30 s; a VM shutdown that the host asks for without one is shorter).
	defaultGracePeriod = 10 * time.Second
	// killWait bounds the wait for SIGKILLed processes to be reaped.
	killWait = 2 * time.Second
	// powerOffDelay lets the Shutdown reply leave through the port before
	// the guest goes away.
	powerOffDelay = 100 * time.Millisecond
)

// Shutdown stops every process, replies, then powers off; see the proto.
func (s *Server) Shutdown(ctx context.Context, req *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	s.shuttingDown.Store(true)
	grace := time.Duration(req.GetGracePeriodNs())
	if grace <= 0 {
		grace = defaultGracePeriod
	}
	if err := s.stopAll(ctx, grace); err != nil {
		s.log.Warn("stop processes for shutdown", "err", err)
	}
	if err := s.drainOutput(ctx); err != nil {
		s.log.Warn("output still in flight at power-off", "err", err)
	}
	if off := s.cfg.PowerOff; off != nil {
		s.goSafe("power off", func() {
			time.Sleep(powerOffDelay)
			off()
		})
	}
	return &api.ShutdownResponse{}, nil
}

// drainOutput waits, after stopAll, until what the stopped processes wrote
// has left the guest: their output settled and their logs ended, every
// Attach and Forward call delivered its last bytes (and exit status), and
// the log queue has written every frame to the port. Only then does
// Shutdown reply, and the power-off follows the reply, so the host has
// received all of it before the machine stops. It is bounded by
// DrainTimeout, the bound an attach already waits for a process's pipes.
func (s *Server) drainOutput(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	s.mu.Lock()
	var settling []*process
	for _, c := range s.containers {
		for _, p := range c.procs {
			p.mu.Lock()
			if p.state == procExited {
				settling = append(settling, p)
			}
			p.mu.Unlock()
		}
	}
	s.mu.Unlock()
	for _, p := range settling {
		select {
		case <-p.settled:
		case <-ctx.Done():
			return fmt.Errorf("output of process %s not settled: %w", p.id, ctx.Err())
		}
	}
	if err := s.streams.wait(ctx); err != nil {
		return fmt.Errorf("attach and forward calls still running: %w", err)
	}
	if err := s.logs.WaitEmpty(ctx); err != nil {
		return fmt.Errorf("container output still queued for the log port: %w", err)
	}
	return nil
}

// stopAll sends SIGTERM to every container, waits up to grace for their
// processes to exit, then SIGKILLs what is left and waits for it.
func (s *Server) stopAll(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	var errs []error
	if grace > 0 {
		for _, c := range cs {
			errs = append(errs, s.signalContainer(c, syscall.SIGTERM))
		}
		if s.waitAllExited(ctx, cs, grace) {
			return errors.Join(errs...)
		}
	}
	for _, c := range cs {
		errs = append(errs, s.signalContainer(c, syscall.SIGKILL))
	}
	if !s.waitAllExited(ctx, cs, killWait) {
		errs = append(errs, fmt.Errorf("processes still running %v after SIGKILL", killWait))
	}
	return errors.Join(errs...)
}

// waitAllExited polls until no container has a live process (tracked, or
// in its cgroup) or the timeout passes.
func (s *Server) waitAllExited(ctx context.Context, cs []*container, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !s.anyRunning(cs) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) anyRunning(cs []*container) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		for _, p := range c.procs {
			if p.isRunning() {
				return true
			}
		}
		if c.cgroup != nil {
			if pids, err := c.cgroup.pids(); err == nil && len(pids) > 0 {
				return true
			}
		}
	}
	return false
}
