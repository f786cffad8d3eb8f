package shim

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
)

func TestShutdownRequestEncoding(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Nanosecond, 8 * time.Second, 1<<62 - 1} {
		want, err := proto.Marshal(&api.ShutdownRequest{GracePeriodNs: grace.Nanoseconds()})
		if err != nil {
			t.Fatal(err)
		}
		if got := shutdownRequest(grace); !bytes.Equal(got, want) {
			t.Errorf("shutdownRequest(%v) = %x, agent/api's message is %x", grace, got, want)
		}
	}
}

// shutdownAgent answers Shutdown with err, recording the grace it got.
type shutdownAgent struct {
	agentgrpc.UnimplementedAgentServer
	err   error
	grace chan time.Duration
}

func (a *shutdownAgent) Shutdown(ctx context.Context, req *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	a.grace <- time.Duration(req.GetGracePeriodNs())
	return &api.ShutdownResponse{}, a.err
}

// AgentShutdown's call against grpc-go's server (the real agent's server,
// agent/grpcserver, is covered by the QEMU tests of this package).
func TestAgentShutdownAgainstGRPCServer(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		wantErr string
	}{
		{"accepted", nil, ""},
		{"refused", status.Error(codes.FailedPrecondition, "not now: 100% busy"), `grpc-status "9": not now: 100% busy`},
	} {
		t.Run(c.name, func(t *testing.T) {
			agent := &shutdownAgent{err: c.err, grace: make(chan time.Duration, 1)}
			srv := grpc.NewServer()
			agentgrpc.RegisterAgentServer(srv, agent)
			hostEnd := serveOverSocketPair(t, srv)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := AgentShutdown(ctx, hostEnd, 7*time.Second)
			hostEnd.Close()
			if c.wantErr == "" && err != nil {
				t.Fatalf("AgentShutdown: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("AgentShutdown: %v, want an error with %q", err, c.wantErr)
			}
			if got := <-agent.grace; got != 7*time.Second {
				t.Errorf("the agent got grace %v, want 7s", got)
			}
		})
	}
}

// The guest agent's own server, agent/grpcserver.
func TestAgentShutdownAgainstAgentServer(t *testing.T) {
	graces := make(chan time.Duration, 1)
	gs := grpcserver.New(grpcserver.Options{})
	grpcserver.HandleUnary(gs, agentShutdownPath, func(ctx context.Context, req *api.ShutdownRequest) (*api.ShutdownResponse, error) {
		graces <- time.Duration(req.GetGracePeriodNs())
		return &api.ShutdownResponse{}, nil
	})
	hostEnd, guestEnd, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	ln := &oneConnListener{conns: make(chan net.Conn, 1)}
	ln.conns <- guestEnd
	go gs.Serve(ln)
	defer gs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := AgentShutdown(ctx, hostEnd, 3*time.Second); err != nil {
		t.Fatalf("AgentShutdown: %v", err)
	}
	hostEnd.Close()
	if got := <-graces; got != 3*time.Second {
		t.Errorf("the agent got grace %v, want 3s", got)
	}
}

// oneConnListener hands out the connections sent to it, then blocks
// until closed.
type oneConnListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *oneConnListener) Close() error {
	defer func() { recover() }() // closed twice by Serve and Stop
	close(l.conns)
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "agent", Net: "unix"} }

// serveOverSocketPair serves srv on one end of a socket pair until the
// test ends and returns the other end. A socket pair is buffered as the
// yamux stream is (net.Pipe is not: both ends' HTTP/2 prefaces would block
// each other).
func serveOverSocketPair(t *testing.T, srv interface {
	Serve(net.Listener) error
	Stop()
}) net.Conn {
	t.Helper()
	hostEnd, guestEnd, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	ln := &oneConnListener{conns: make(chan net.Conn, 1)}
	ln.conns <- guestEnd
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return hostEnd
}
