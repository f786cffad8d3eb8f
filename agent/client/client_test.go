package client

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
)

func TestMapProcessError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		ok   bool
	}{
		{status.Error(codes.NotFound, `exec "nope": executable file not found in $PATH`), 127, true},
		{status.Error(codes.PermissionDenied, `exec "x": /bin/x: permission denied`), 126, true},
		{status.Error(codes.NotFound, `container "c": not found`), 0, false},
		{status.Error(codes.Internal, "boom"), 0, false},
		{errors.New("plain"), 0, false},
	} {
		mapped := MapProcessError(tc.err)
		code, ok := ExitCode(mapped)
		if code != tc.code || ok != tc.ok {
			t.Errorf("%v: code %d %v", tc.err, code, ok)
		}
	}
	if MapProcessError(nil) != nil {
		t.Fatal("nil error mapped")
	}
}

// infoOnly is a fake agent for the client's polling logic; the real
// server is tested with this client in package agent.
type infoOnly struct {
	agentgrpc.UnimplementedAgentServer
}

func (infoOnly) Info(context.Context, *api.InfoRequest) (*api.InfoResponse, error) {
	return &api.InfoResponse{Version: "fake"}, nil
}

// pipeListener yields the server ends of net.Pipe connections.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { close(l.done); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

func TestWaitReadyPollsUntilTheAgentAnswers(t *testing.T) {
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	gs := grpc.NewServer()
	agentgrpc.RegisterAgentServer(gs, infoOnly{})
	go gs.Serve(l)
	defer gs.Stop()

	// The guest is "booting" for the first dials: no port yet.
	var dials atomic.Int32
	dial := func(ctx context.Context) (net.Conn, error) {
		if dials.Add(1) <= 3 {
			return nil, errors.New("agent port not connected yet")
		}
		client, server := net.Pipe()
		select {
		case l.conns <- server:
			return client, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := Dial(context.Background(), dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := c.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() != "fake" || dials.Load() < 4 {
		t.Fatalf("info %+v after %d dials", info, dials.Load())
	}
}

func TestWaitReadyGivesUpWithTheContext(t *testing.T) {
	c, err := Dial(context.Background(), func(context.Context) (net.Conn, error) { return nil, errors.New("never") })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}
