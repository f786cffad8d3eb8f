package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
)

// Forward connects to a TCP port inside the guest and carries bytes both
// ways, with half-close in each direction; see the proto.
func (s *Server) Forward(stream grpcserver.Bidi[api.ForwardRequest, api.ForwardResponse]) error {
	defer s.streams.add()()
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("forward: read first message: %w", err)
	}
	port := first.GetPort()
	if port == 0 || port > 65535 {
		return fmt.Errorf("forward: port %d: %w", port, ErrInvalidArgument)
	}
	host := first.GetHost()
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		// Unavailable: the host reports a failed port-forward, not a bug.
		return fmt.Errorf("forward: dial %s: %w: %w", addr, ErrUnavailable, err)
	}
	conn := nc.(*net.TCPConn)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	// Guest to host: until the guest side's EOF, then say so. The handler
	// must not return while this goroutine may still Send.
	outDone := make(chan error, 1)
	outFinished := false
	defer func() {
		conn.Close()
		if !outFinished {
			<-outDone
		}
	}()
	s.goSafe("forward out "+addr, func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if serr := stream.Send(&api.ForwardResponse{Data: buf[:n]}); serr != nil {
					outDone <- serr
					return
				}
			}
			if errors.Is(err, io.EOF) {
				outDone <- stream.Send(&api.ForwardResponse{CloseWrite: true})
				return
			}
			if err != nil {
				outDone <- err
				return
			}
		}
	})

	// Host to guest, on this goroutine.
	if len(first.GetData()) > 0 {
		if _, err := conn.Write(first.GetData()); err != nil {
			return fmt.Errorf("forward to %s: %w", addr, err)
		}
	}
	inClosed := first.GetCloseWrite()
	if inClosed {
		_ = conn.CloseWrite()
	}
	for !inClosed {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			_ = conn.CloseWrite()
			break
		}
		if err != nil {
			return fmt.Errorf("forward to %s: receive: %w", addr, err)
		}
		if len(m.GetData()) > 0 {
			if _, err := conn.Write(m.GetData()); err != nil {
				return fmt.Errorf("forward to %s: %w", addr, err)
			}
		}
		if m.GetCloseWrite() {
			_ = conn.CloseWrite()
			inClosed = true
		}
	}
	// The context ending closes conn, which ends the reader too.
	err = <-outDone
	outFinished = true
	if err != nil {
		return fmt.Errorf("forward from %s: %w", addr, err)
	}
	return nil
}
