package container

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/agent/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Attach connects to a running process's streams until it exits (kubectl
// attach; `vk-applevm run` re-attaching to a detached container). The
// first attacher of a process gets its output from the start (bounded);
// attaching again to a logged process that has exited gives ErrExited,
// once its log is complete: the output is there.
func (s *VM) Attach(ctx context.Context, processID string, stdio IO) error {
	_, err := s.AttachWait(ctx, processID, stdio)
	return err
}

// AttachWait is Attach that also returns the exit status.
func (s *VM) AttachWait(ctx context.Context, processID string, stdio IO) (ExitStatus, error) {
	end, err := s.streams.begin("attach to " + processID)
	if err != nil {
		return ExitStatus{}, err
	}
	defer end()
	ag, err := s.agentClient()
	if err != nil {
		return ExitStatus{}, err
	}
	st, err := ag.AttachProcess(ctx, client.AttachOptions{
		ContainerID: s.id, ProcessID: processID,
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr, Resize: termSizes(ctx, stdio.Resize),
	})
	if status.Code(err) == codes.FailedPrecondition {
		// It has exited and its output is only in its log, which a caller
		// reads instead (kubectl falls back to the logs): let the log be
		// complete first. Wait answers at once for an exited process.
		if _, werr := s.Wait(ctx, processID); werr != nil {
			s.rt.log.Debug("wait for the exited process's log", "vm", s.id, "process", processID, "err", werr)
		}
		return ExitStatus{}, fmt.Errorf("attach to %s: %w: %v", processID, ErrExited, err)
	}
	if err != nil {
		return ExitStatus{}, s.agentErr(ctx, fmt.Sprintf("attach to %s", processID), err)
	}
	return exitStatus(st), nil
}
