package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
)

// AgentShutdown is the default GuestShutdown: the agent API's Shutdown RPC,
// as one gRPC connection over conn.
func AgentShutdown(ctx context.Context, conn net.Conn, grace time.Duration) error {
	var mu sync.Mutex
	used := false
	cc, err := grpc.NewClient("passthrough:///vkav.agent",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			// The stream can carry one connection; a redial has nothing
			// to dial.
			if used {
				return nil, errors.New("agent stream already used")
			}
			used = true
			return conn, nil
		}))
	if err != nil {
		return fmt.Errorf("agent client: %w", err)
	}
	defer cc.Close()
	if _, err := agentgrpc.NewAgentClient(cc).Shutdown(ctx, &api.ShutdownRequest{GracePeriodNs: grace.Nanoseconds()}); err != nil {
		return fmt.Errorf("agent Shutdown: %w", err)
	}
	return nil
}
