package shim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
	"github.com/vk-applevm/vk-applevm/vm/balloon"
)

// The balloon's sample, hand-decoded, against the guest agent's own server
// and agent/api's encoding of every StatsResponse field.
func TestAgentGuestMemoryAgainstAgentServer(t *testing.T) {
	gs := grpcserver.New(grpcserver.Options{})
	grpcserver.HandleUnary(gs, agentStatsPath, func(ctx context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
		if req.GetContainerId() != "" {
			t.Errorf("the balloon asked for container %q", req.GetContainerId())
		}
		return &api.StatsResponse{
			TimestampUnixNs: 1, CpuUsageNs: 2, MemoryUsageBytes: 3, MemoryWorkingSetBytes: 4,
			MemoryRssBytes: 5, OomKills: 6, Pids: 7,
			GuestMemoryTotalBytes: 640 << 20, GuestMemoryAvailableBytes: 571 << 20,
			GuestCpuUsageNs: 10, ScratchUsedBytes: 11, ScratchTotalBytes: 12, AgentRssBytes: 13,
		}, nil
	})
	hostEnd := serveOverSocketPair(t, gs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := agentGuestMemory(ctx, hostEnd)
	hostEnd.Close()
	if err != nil {
		t.Fatalf("agentGuestMemory: %v", err)
	}
	if want := (balloon.Sample{TotalBytes: 640 << 20, AvailableBytes: 571 << 20}); got != want {
		t.Errorf("sample %+v, want %+v", got, want)
	}
}

// A machine with a traditional balloon (vz's kind) gets targets from the
// guest's free memory, never below the floor: the guest uses 100 MiB of
// 640, so the target is 100 + 64 MiB of headroom unless the floor is above.
func TestShimDrivesABalloonMachine(t *testing.T) {
	for _, c := range []struct {
		name             string
		floorMiB, target int
	}{
		{"the guest's use and headroom above a floor of 128", 128, 164},
		{"a floor above what the guest needs holds the target", 512, 512},
	} {
		t.Run(c.name, func(t *testing.T) {
			fvm := launchFake(t, func(cfg *Config) {
				cfg.Spec.MemoryMiB = 640
				cfg.MemoryFloorMiB = uint64(c.floorMiB)
			}, envBalloon+"=1")
			eventually(t, 30*time.Second, "a balloon target in shim.log", func() bool {
				return shimLogContains(t, fvm.dir, "fake balloon: target")
			})
			log := readFileString(t, filepath.Join(fvm.dir, logFile))
			if want := fmt.Sprintf("fake balloon: target %d MiB", c.target); !strings.Contains(log, want) {
				t.Fatalf("shim.log has no %q:\n%s", want, log)
			}
		})
	}
}
