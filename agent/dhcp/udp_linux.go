package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// udpConn carries renewals once the interface has its address.
type udpConn struct {
	c   *net.UDPConn
	dst netip.AddrPort
	buf []byte
}

// openUDP binds 0.0.0.0:68 on the interface: a RENEWING server answers
// unicast to the leased address, a REBINDING one may broadcast, and only
// a wildcard bind receives both.
func openUDP(ctx context.Context, ifname string, dst netip.Addr) (*udpConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_BROADCAST} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 1); serr != nil {
					return
				}
			}
			serr = unix.BindToDevice(int(fd), ifname)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", ClientPort))
	if err != nil {
		return nil, fmt.Errorf("open UDP port %d on %s: %w", ClientPort, ifname, err)
	}
	return &udpConn{c: pc.(*net.UDPConn), dst: netip.AddrPortFrom(dst, ServerPort), buf: make([]byte, receiveBufferSize)}, nil
}

func (u *udpConn) Close() error { return u.c.Close() }

func (u *udpConn) Send(ctx context.Context, msg []byte) error {
	if d, ok := ctx.Deadline(); ok {
		_ = u.c.SetWriteDeadline(d)
	}
	_, err := u.c.WriteToUDPAddrPort(msg, u.dst)
	return err
}

func (u *udpConn) Receive(ctx context.Context, deadline time.Time) ([]byte, error) {
	stop, err := setReadDeadline(ctx, u.c, deadline)
	if err != nil {
		return nil, err
	}
	defer stop()
	for {
		n, from, err := u.c.ReadFromUDPAddrPort(u.buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if from.Port() != ServerPort {
			continue
		}
		return u.buf[:n], nil
	}
}
