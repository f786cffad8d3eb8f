package container

import (
	"context"
	"fmt"

	"github.com/vk-applevm/vk-applevm/agent/client"
)

// Attach connects to a running process's streams until it exits (kubectl
// attach; `vk-applevm run` re-attaching to a detached container).
func (s *VM) Attach(ctx context.Context, processID string, stdio IO) error {
	_, err := s.AttachWait(ctx, processID, stdio)
	return err
}

// AttachWait is Attach that also returns the exit status.
func (s *VM) AttachWait(ctx context.Context, processID string, stdio IO) (ExitStatus, error) {
	ag, err := s.agentClient()
	if err != nil {
		return ExitStatus{}, err
	}
	st, err := ag.AttachProcess(ctx, client.AttachOptions{
		ContainerID: s.id, ProcessID: processID,
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr, Resize: termSizes(ctx, stdio.Resize),
	})
	if err != nil {
		return ExitStatus{}, s.agentErr(ctx, fmt.Sprintf("attach to %s", processID), err)
	}
	return exitStatus(st), nil
}
