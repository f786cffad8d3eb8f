package vswitch

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dgramLink is a Link over the switch's end of a VM's socket pair.
type dgramLink struct {
	c   *net.UnixConn
	raw syscall.RawConn
}

// newDgramLink takes ownership of f.
func newDgramLink(f *os.File) (*dgramLink, error) {
	defer f.Close() // FileConn dups it
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("VM link: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("VM link: %T is not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("VM link: %w", err)
	}
	return &dgramLink{c: uc, raw: raw}, nil
}

func (l *dgramLink) ReadFrame(b []byte) (int, error) { return l.c.Read(b) }

func (l *dgramLink) WriteFrame(f []byte) error {
	var werr error
	err := l.raw.Write(func(fd uintptr) bool {
		// MSG_DONTWAIT: a full VM drops the frame instead of stalling the
		// sender's goroutine (and every VM behind it).
		werr = unix.Sendto(int(fd), f, unix.MSG_DONTWAIT, nil)
		return true
	})
	if err != nil {
		return err
	}
	return werr
}

func (l *dgramLink) Close() error { return l.c.Close() }
