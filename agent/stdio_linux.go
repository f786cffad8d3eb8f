package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// stdio is the parent's and the child's ends of a process's standard
// streams.
type stdio struct {
	child             []*os.File // fds 0, 1, 2 of the child
	stdinW, pty       *os.File
	stdoutR, stderrR  *os.File
	closeAfterStart   []*os.File
	closeOnStartError []*os.File
}

func (s *Server) openStdio(p *process) (*stdio, error) {
	io := &stdio{}
	if p.terminal {
		// The container's own devpts instance, so that the terminal is
		// /dev/pts/N inside the container.
		m, err := openInRoot(p.c.rootfs, "/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open the container's pty multiplexer: %w", err)
		}
		master, slave, err := openPTY(m)
		if err != nil {
			return nil, err
		}
		if p.rows > 0 && p.cols > 0 {
			if err := setWinsize(master, p.rows, p.cols); err != nil {
				master.Close()
				slave.Close()
				return nil, err
			}
		}
		io.child = []*os.File{slave, slave, slave}
		io.pty, io.stdoutR = master, master
		if p.stdin {
			io.stdinW = master
		}
		io.closeAfterStart = []*os.File{slave}
		io.closeOnStartError = []*os.File{master}
		return io, nil
	}
	var stdin *os.File
	if p.stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		stdin, io.stdinW = r, w
		io.closeOnStartError = append(io.closeOnStartError, w)
	} else {
		f, err := os.Open(path.Join(s.cfg.DevDir, "null"))
		if err != nil {
			return nil, fmt.Errorf("open /dev/null: %w", err)
		}
		stdin = f
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	io.child = []*os.File{stdin, outW, errW}
	io.stdoutR, io.stderrR = outR, errR
	io.closeAfterStart = []*os.File{stdin, outW, errW}
	io.closeOnStartError = append(io.closeOnStartError, outR, errR)
	return io, nil
}

// pumpOutput copies the process's output into its hub until the pipes
// close, then finishes the hub. It runs from start, with p.mu held.
func (s *Server) pumpOutput(p *process, stdout, stderr *os.File) {
	var wg sync.WaitGroup
	pump := func(o *outPipe, stream logframe.Stream) {
		defer wg.Done()
		defer o.end()
		buf := make([]byte, 32<<10)
		for {
			n, err := o.read(buf)
			if n > 0 {
				data := make([]byte, n)
				copy(data, buf[:n])
				werr := p.out.write(s.ctx, chunk{stream: stream, data: data})
				o.handedOver(n)
				if werr != nil {
					return
				}
			}
			if err != nil {
				// EOF for pipes; EIO for a pty master once the terminal's
				// last holder closed it.
				return
			}
		}
	}
	out := newOutPipe(stdout)
	p.pipes = []*outPipe{out}
	wg.Add(1)
	s.goSafe("stdout "+p.id, func() { pump(out, logframe.Stdout) })
	if stderr != nil {
		errp := newOutPipe(stderr)
		p.pipes = append(p.pipes, errp)
		wg.Add(1)
		s.goSafe("stderr "+p.id, func() { pump(errp, logframe.Stderr) })
	}
	s.goSafe("output "+p.id, func() {
		wg.Wait()
		p.out.finish()
	})
}

// outPipe is the read end of one of a process's output pipes (or its pty
// master). It counts the bytes taken out of the pipe and, of those, the
// bytes the hub has accepted, so that once the process has exited its
// settle can wait for exactly what the process wrote (backlog) before it
// gives a surviving child's writes the drain timeout.
type outPipe struct {
	f  *os.File
	rc syscall.RawConn // nil if the file is not pollable: no backlog then

	mu     sync.Mutex
	taken  int64         // bytes read out of the pipe
	handed int64         // of those, bytes the hub took
	moved  chan struct{} // closed and replaced when handed grows or the reader ends
	ended  bool
}

func newOutPipe(f *os.File) *outPipe {
	o := &outPipe{f: f, moved: make(chan struct{})}
	if rc, err := f.SyscallConn(); err == nil {
		o.rc = rc
	}
	return o
}

// read reads like f.Read, counting what it takes out of the pipe under
// o.mu, so that backlog sees the count and the pipe's content at one
// instant.
func (o *outPipe) read(b []byte) (int, error) {
	if o.rc == nil {
		n, err := o.f.Read(b)
		o.mu.Lock()
		o.taken += int64(n)
		o.mu.Unlock()
		return n, err
	}
	var n int
	var rerr error
	err := o.rc.Read(func(fd uintptr) bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for {
			n, rerr = unix.Read(int(fd), b)
			if rerr != unix.EINTR {
				break
			}
		}
		if n > 0 {
			o.taken += int64(n)
		}
		return rerr != unix.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// handedOver records that the hub took n more bytes.
func (o *outPipe) handedOver(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handed += int64(n)
	o.wakeLocked()
}

// wakeLocked wakes whoever waits in waitHanded; o.mu must be held.
func (o *outPipe) wakeLocked() {
	close(o.moved)
	o.moved = make(chan struct{})
}

// end records that the reader has stopped, and closes the pipe.
func (o *outPipe) end() {
	o.mu.Lock()
	o.ended = true
	o.wakeLocked()
	o.mu.Unlock()
	o.f.Close()
}

// backlog returns how many bytes the hub must have taken for everything in
// the pipe now to have reached it; ok is false when that cannot be told.
// (For a pty master it counts what the line discipline holds, not what the
// kernel has yet to move there.)
func (o *outPipe) backlog() (target int64, ok bool) {
	if o.rc == nil {
		return 0, false
	}
	err := o.rc.Control(func(fd uintptr) {
		o.mu.Lock()
		defer o.mu.Unlock()
		// TIOCINQ is FIONREAD: the bytes waiting in a pipe, too.
		if q, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			target, ok = o.taken+int64(q), true
		}
	})
	if err != nil {
		return 0, true // closed: the reader has ended
	}
	return target, ok
}

// waitHanded waits until the hub has taken target bytes, the reader has
// ended, or ctx ends.
func (o *outPipe) waitHanded(ctx context.Context, target int64) {
	for {
		o.mu.Lock()
		done, moved := o.handed >= target || o.ended, o.moved
		o.mu.Unlock()
		if done {
			return
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return
		}
	}
}
