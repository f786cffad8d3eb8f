package shim

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/balloon"
)

// agentStatsPath is the Agent service's Stats method
// (agent/api/agentgrpc/agent_service.proto).
const agentStatsPath = "/vkav.agent.v1.Agent/Stats"

// StatsResponse's guest_memory_total_bytes and guest_memory_available_bytes
// (agent/api/agent.proto).
const (
	statsGuestTotalField     = 8
	statsGuestAvailableField = 9
)

// balloonSampleTimeout bounds one Stats call: a guest too busy to answer
// in time is sampled again at the next tick.
const balloonSampleTimeout = 5 * time.Second

// runBalloon drives a traditional balloon (vz) from the guest's free memory
// until ctx ends. It uses the agent as the shim's Shutdown does: one
// stream per call, protobuf's wire format by hand (no grpc-go in the shim).
func (s *server) runBalloon(ctx context.Context, m vm.BalloonMachine, proxy *agentProxy) {
	ctl, err := balloon.NewController(balloon.Policy{
		MemoryBytes: s.cfg.Spec.MemoryMiB << 20,
		FloorBytes:  s.cfg.MemoryFloorMiB << 20,
	})
	if err != nil {
		s.log.Warn("no memory balloon", "err", err)
		return
	}
	loop := &balloon.Loop{
		Controller: ctl,
		Sample: func(ctx context.Context) (balloon.Sample, error) {
			ctx, cancel := context.WithTimeout(ctx, balloonSampleTimeout)
			defer cancel()
			stream, err := proxy.host.Open(ctx)
			if err != nil {
				return balloon.Sample{}, err
			}
			defer stream.Close()
			if dl, ok := ctx.Deadline(); ok {
				_ = stream.SetDeadline(dl)
			}
			return agentGuestMemory(ctx, stream)
		},
		SetTarget: m.SetMemoryTarget,
		Log:       s.log,
	}
	loop.Run(ctx)
}

// agentGuestMemory asks the agent for the guest's memory: Stats without a
// container.
func agentGuestMemory(ctx context.Context, conn net.Conn) (balloon.Sample, error) {
	msg, err := agentCall(ctx, conn, agentStatsPath, nil)
	if err != nil {
		return balloon.Sample{}, fmt.Errorf("agent Stats: %w", err)
	}
	var s balloon.Sample
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return balloon.Sample{}, fmt.Errorf("agent Stats: decode: %w", protowire.ParseError(n))
		}
		msg = msg[n:]
		if typ == protowire.VarintType && (num == statsGuestTotalField || num == statsGuestAvailableField) {
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return balloon.Sample{}, fmt.Errorf("agent Stats: decode: %w", protowire.ParseError(n))
			}
			msg = msg[n:]
			if num == statsGuestTotalField {
				s.TotalBytes = v
			} else {
				s.AvailableBytes = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return balloon.Sample{}, fmt.Errorf("agent Stats: decode: %w", protowire.ParseError(n))
		}
		msg = msg[n:]
	}
	if s.TotalBytes == 0 {
		return balloon.Sample{}, fmt.Errorf("agent Stats: no guest memory figures")
	}
	return s, nil
}
