package agent

import (
	"fmt"
	"os"
	"path"
	"sync"

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
// close, then finishes the hub.
func (s *Server) pumpOutput(p *process, stdout, stderr *os.File) {
	var wg sync.WaitGroup
	pump := func(f *os.File, stream logframe.Stream) {
		defer wg.Done()
		defer f.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				data := make([]byte, n)
				copy(data, buf[:n])
				if werr := p.out.write(s.ctx, chunk{stream: stream, data: data}); werr != nil {
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
	wg.Add(1)
	s.goSafe("stdout "+p.id, func() { pump(stdout, logframe.Stdout) })
	if stderr != nil {
		wg.Add(1)
		s.goSafe("stderr "+p.id, func() { pump(stderr, logframe.Stderr) })
	}
	s.goSafe("output "+p.id, func() {
		wg.Wait()
		p.out.finish()
	})
}
