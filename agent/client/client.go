// Package client is the host side of the agent API: a gRPC client over the
// streams the per-VM shim hands out (one yamux stream of the agent port per
// connection), readiness polling, an exec helper and the mapping of the
// agent's errors to exit codes.
package client

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
)

// Client is a connection to one guest agent. The embedded AgentClient
// (grpc-go stubs from package agentgrpc) offers every RPC.
type Client struct {
	agentgrpc.AgentClient
	conn *grpc.ClientConn
}

// readyPollInterval is how often WaitReady asks; 20 ms is what Apple's
// vminitd client uses when it polls its agent after boot.
const readyPollInterval = 20 * time.Millisecond

// Dial returns a client whose connections come from dial (the shim's
// DialAgent: each call yields one stream to the agent). No connection is
// made until the first call; use WaitReady after boot.
func Dial(ctx context.Context, dial func(context.Context) (net.Conn, error)) (*Client, error) {
	conn, err := grpc.NewClient("passthrough:///vkav-agent",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dial(ctx) }),
		// gRPC's default reconnect backoff starts at 1 s and grows to
		// 2 min; a booting guest is polled every 20 ms, so keep the
		// reconnects close to that.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: readyPollInterval, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("create agent client: %w", err)
	}
	return &Client{AgentClient: agentgrpc.NewAgentClient(conn), conn: conn}, nil
}

// Close closes the client's connections.
func (c *Client) Close() error { return c.conn.Close() }

// WaitReady polls Info every 20 ms until the agent answers or ctx ends,
// and returns the answer.
func (c *Client) WaitReady(ctx context.Context) (*api.InfoResponse, error) {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		info, err := c.Info(attempt, &api.InfoRequest{})
		cancel()
		if err == nil {
			return info, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for agent: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(readyPollInterval):
		}
	}
}
