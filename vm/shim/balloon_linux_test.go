package shim

import (
	"context"
	"net"
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
// guest's free memory, never below the floor: here the guest uses 100 MiB
// of 640, so the target is 100 + 64 MiB of headroom, under a floor of 128.
func TestShimDrivesABalloonMachine(t *testing.T) {
	fvm := launchFake(t, func(c *Config) {
		c.Spec.MemoryMiB = 640
		c.MemoryFloorMiB = 128
	}, envBalloon+"=1")
	eventually(t, 30*time.Second, "a balloon target in shim.log", func() bool {
		return shimLogContains(t, fvm.dir, "fake balloon: target")
	})
	log := readFileString(t, filepath.Join(fvm.dir, logFile))
	if !strings.Contains(log, "fake balloon: target 164 MiB") {
		t.Fatalf("shim.log has no target of 164 MiB:\n%s", log)
	}
}

// A floor above what the guest needs holds the target there.
func TestShimBalloonKeepsTheFloor(t *testing.T) {
	fvm := launchFake(t, func(c *Config) {
		c.Spec.MemoryMiB = 640
		c.MemoryFloorMiB = 512
	}, envBalloon+"=1")
	eventually(t, 30*time.Second, "a balloon target in shim.log", func() bool {
		return shimLogContains(t, fvm.dir, "fake balloon: target")
	})
	log := readFileString(t, filepath.Join(fvm.dir, logFile))
	if !strings.Contains(log, "fake balloon: target 512 MiB") {
		t.Fatalf("shim.log has no target of 512 MiB:\n%s", log)
	}
}
