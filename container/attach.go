package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// Attach connects to a running process's streams until it exits (kubectl
// attach; `vk-applevm run` re-attaching to a detached container).
func (s *Sandbox) Attach(ctx context.Context, processID string, stdio IO) error {
	_, err := s.attach(ctx, processID, stdio)
	return err
}

// AttachWait is Attach that also returns the exit status.
func (s *Sandbox) AttachWait(ctx context.Context, processID string, stdio IO) (ExitStatus, error) {
	return s.attach(ctx, processID, stdio)
}

func (s *Sandbox) attach(ctx context.Context, processID string, stdio IO) (ExitStatus, error) {
	ag, err := s.agentClient()
	if err != nil {
		return ExitStatus{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ag.Attach(ctx)
	if err != nil {
		return ExitStatus{}, s.agentErr(ctx, "attach", err)
	}
	var mu sync.Mutex
	send := func(m *api.AttachRequest) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(m)
	}
	if err := send(&api.AttachRequest{ContainerId: s.id, ProcessId: processID,
		WantStdout: stdio.Stdout != nil, WantStderr: stdio.Stderr != nil}); err != nil {
		return ExitStatus{}, s.agentErr(ctx, "attach to "+processID, err)
	}
	if stdio.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil {
				n, err := stdio.Stdin.Read(buf)
				if n > 0 && send(&api.AttachRequest{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
					return
				}
				if err != nil {
					_ = send(&api.AttachRequest{CloseStdin: true})
					return
				}
			}
		}()
	}
	if stdio.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-stdio.Resize:
					if !ok {
						return
					}
					_ = send(&api.AttachRequest{Rows: uint32(sz.Rows), Cols: uint32(sz.Cols)})
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return ExitStatus{}, s.agentErr(ctx, "attach to "+processID, err)
		}
		if st := m.GetExit(); st != nil {
			return exitStatus(st), nil
		}
		var w io.Writer
		switch m.GetStream() {
		case api.AttachResponse_STDOUT:
			w = stdio.Stdout
		case api.AttachResponse_STDERR:
			w = stdio.Stderr
		}
		if w != nil && len(m.GetData()) > 0 {
			if _, err := w.Write(m.GetData()); err != nil {
				return ExitStatus{}, fmt.Errorf("attach to %s: write output: %w", processID, err)
			}
		}
	}
}
