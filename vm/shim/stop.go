package shim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// supervise acts on stop and kill requests until the machine has stopped.
func (s *server) supervise(m vm.Machine) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var deadline time.Time
	var killTimer *time.Timer
	var killC <-chan time.Time
	stopping := false
	for {
		select {
		case <-m.Done():
			if killTimer != nil {
				killTimer.Stop()
			}
			return
		case r := <-s.requests:
			if r.kill || r.grace <= 0 {
				s.log.Info("killing the machine")
				s.kill(m)
				continue
			}
			if d := time.Now().Add(r.grace); deadline.IsZero() || d.Before(deadline) {
				deadline = d
				if killTimer != nil {
					killTimer.Stop()
				}
				killTimer = time.NewTimer(r.grace)
				killC = killTimer.C
			}
			if !stopping {
				stopping = true
				go s.stopGracefully(ctx, m, r.grace)
			}
		case <-killC:
			s.log.Warn("grace period over: killing the machine")
			s.kill(m)
		}
	}
}

func (s *server) kill(m vm.Machine) {
	if err := m.Kill(); err != nil {
		s.log.Error("kill machine", "err", err)
	}
}

// stopGracefully asks the guest agent to shut down, and the hypervisor to
// power the guest off if the agent cannot be asked. supervise kills the
// machine when the grace period ends.
func (s *server) stopGracefully(ctx context.Context, m vm.Machine, grace time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	err := errors.New("no guest shutdown method configured")
	s.mu.Lock()
	proxy := s.proxy
	s.mu.Unlock()
	if s.opts.guestShutdown != nil && proxy != nil {
		err = s.shutdownGuest(ctx, proxy, guestGrace(grace))
		if err == nil {
			s.log.Info("guest agent is shutting down", "grace", guestGrace(grace))
			return
		}
	}
	s.log.Info("asking the hypervisor to power the guest off", "reason", err)
	if err := m.RequestStop(ctx); err != nil {
		s.log.Warn("request stop", "err", err)
	}
}

func (s *server) shutdownGuest(ctx context.Context, p *agentProxy, grace time.Duration) error {
	// Open waits for a session if the guest is between two: a stop
	// during a reconnect still goes through the agent.
	stream, err := p.host.Open(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = stream.SetDeadline(dl)
	}
	if err := s.opts.guestShutdown(ctx, stream, grace); err != nil {
		return fmt.Errorf("agent shutdown: %w", err)
	}
	return nil
}

// guestGrace leaves part of the host's grace period for the guest to sync,
// unmount and power off after its processes are gone: a fifth, at most 3 s
// (a TCG power-off of the floor guest takes ~1 s, environment.md).
func guestGrace(grace time.Duration) time.Duration {
	return grace - min(grace/5, 3*time.Second)
}
