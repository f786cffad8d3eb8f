package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// TermSize is a terminal size.
type TermSize struct {
	Rows, Cols uint32
}

// ExecOptions describe one process to run and its I/O.
type ExecOptions struct {
	ContainerID, ProcessID string
	Args, Env              []string
	Cwd                    string
	UID, GID               uint32
	// User, when set, wins over UID/GID: "user[:group]" resolved in the
	// container (CreateProcessRequest.user).
	User           string
	AdditionalGIDs []uint32
	// LogName also sends the output to the log port under that name.
	LogName string
	// TTY runs the process on a terminal of InitialSize; output then all
	// arrives on Stdout.
	TTY         bool
	InitialSize TermSize
	// Resize carries terminal size changes until it is closed or the
	// process exits.
	Resize <-chan TermSize
	// Stdin, when set, is copied to the process; its EOF closes the
	// process's stdin. Stdout and Stderr receive output; nil discards it.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Keep leaves the exited process for the caller to delete.
	Keep bool
}

// Exec creates, attaches to and starts a process, copies its I/O and
// returns its exit status once all output is written. A command that
// cannot run returns an error ErrCommandNotFound/ErrCommandNotExecutable
// wraps (see ExitCode).
func (c *Client) Exec(ctx context.Context, o ExecOptions) (*api.ExitStatus, error) {
	_, err := c.CreateProcess(ctx, &api.CreateProcessRequest{
		ContainerId:    o.ContainerID,
		ProcessId:      o.ProcessID,
		Args:           o.Args,
		Env:            o.Env,
		Cwd:            o.Cwd,
		Uid:            o.UID,
		Gid:            o.GID,
		User:           o.User,
		AdditionalGids: o.AdditionalGIDs,
		Terminal:       o.TTY,
		Stdin:          o.Stdin != nil,
		LogName:        o.LogName,
		Rows:           o.InitialSize.Rows,
		Cols:           o.InitialSize.Cols,
	})
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", o.ProcessID, MapProcessError(err))
	}
	if !o.Keep {
		defer func() {
			// Best effort, even if ctx ended: the agent keeps exited
			// processes until they are deleted.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = c.DeleteProcess(dctx, &api.DeleteProcessRequest{ContainerId: o.ContainerID, ProcessId: o.ProcessID})
		}()
	}
	return c.attach(ctx, AttachOptions{
		ContainerID: o.ContainerID, ProcessID: o.ProcessID,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, Resize: o.Resize,
	}, func() error {
		_, err := c.StartProcess(ctx, &api.StartProcessRequest{ContainerId: o.ContainerID, ProcessId: o.ProcessID})
		if err != nil {
			return fmt.Errorf("exec %s: %w", o.ProcessID, MapProcessError(err))
		}
		return nil
	})
}

// AttachOptions connect a caller to an existing process's streams.
type AttachOptions struct {
	ContainerID, ProcessID string
	// Stdin, when set, is copied to the process; its EOF closes the
	// process's stdin. Stdout and Stderr receive output; nil discards it.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize carries terminal size changes until it is closed.
	Resize <-chan TermSize
}

// AttachProcess attaches to a running (or exited) process and copies its
// I/O until it exits; it returns the exit status after all output.
func (c *Client) AttachProcess(ctx context.Context, o AttachOptions) (*api.ExitStatus, error) {
	return c.attach(ctx, o, nil)
}

// attach runs one Attach stream: after the agent confirms the attachment
// (from then on no output is lost) it calls started, if set, then pumps
// stdin, resizes and output until the exit status arrives.
func (c *Client) attach(ctx context.Context, o AttachOptions, started func() error) (*api.ExitStatus, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Attach(actx)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", o.ProcessID, err)
	}
	var sendMu sync.Mutex
	send := func(m *api.AttachRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&api.AttachRequest{
		ContainerId: o.ContainerID, ProcessId: o.ProcessID,
		WantStdout: o.Stdout != nil, WantStderr: o.Stderr != nil,
	}); err != nil {
		return nil, fmt.Errorf("attach to %s: %w", o.ProcessID, err)
	}
	// The first response confirms the attachment.
	if _, err := stream.Recv(); err != nil {
		return nil, fmt.Errorf("attach to %s: %w", o.ProcessID, err)
	}
	if started != nil {
		if err := started(); err != nil {
			return nil, err
		}
	}
	if o.Stdin != nil {
		go copyStdin(actx, o.Stdin, send)
	}
	if o.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-o.Resize:
					if !ok {
						return
					}
					_ = send(&api.AttachRequest{Rows: sz.Rows, Cols: sz.Cols})
				case <-actx.Done():
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
			return nil, fmt.Errorf("attach to %s: read output: %w", o.ProcessID, err)
		}
		if st := m.GetExit(); st != nil {
			return st, nil
		}
		var w io.Writer
		switch m.GetStream() {
		case api.AttachResponse_STDOUT:
			w = o.Stdout
		case api.AttachResponse_STDERR:
			w = o.Stderr
		}
		if w != nil && len(m.GetData()) > 0 {
			if _, err := w.Write(m.GetData()); err != nil {
				return nil, fmt.Errorf("attach to %s: write output: %w", o.ProcessID, err)
			}
		}
	}
}

// stdinChunk bounds one stdin message.
const stdinChunk = 32 << 10

// copyStdin sends r to the process and closes its stdin at EOF. A reader
// that never returns (a terminal) keeps this goroutine until it does.
func copyStdin(ctx context.Context, r io.Reader, send func(*api.AttachRequest) error) {
	buf := make([]byte, stdinChunk)
	for ctx.Err() == nil {
		n, err := r.Read(buf)
		if n > 0 {
			if send(&api.AttachRequest{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
				return
			}
		}
		if err != nil {
			_ = send(&api.AttachRequest{CloseStdin: true})
			return
		}
	}
}
