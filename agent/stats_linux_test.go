package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

// hasController reports whether the test's cgroup2 hierarchy offers a
// controller (on a hybrid cgroup host, memory and cpu stay with v1).
func hasController(t *testing.T, name string) bool {
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range strings.Fields(string(b)) {
		if c == name {
			return true
		}
	}
	return false
}

func TestStatsOnRealCgroup(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "stats")
	// The process starts inside the container's cgroup (CLONE_INTO_CGROUP),
	// in a cgroup namespace rooted there, and burns some CPU.
	r := e.run(t, id, client.ExecOptions{Args: sh(`cat /proc/self/cgroup; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done`)})
	if r.err != nil || r.exit.GetExitCode() != 0 {
		t.Fatalf("%v %+v %q", r.err, r.exit, r.stderr)
	}
	if !strings.Contains(r.stdout, "0::/\n") {
		t.Fatalf("process not in the container's cgroup:\n%s", r.stdout)
	}
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "bg", Args: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "bg"}); err != nil {
		t.Fatal(err)
	}
	st, err := e.cl.Stats(ctx, &api.StatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCpuUsageNs() == 0 || st.GetPids() != 1 || st.GetScratchTotalBytes() == 0 || st.GetScratchUsedBytes() == 0 ||
		st.GetGuestMemoryTotalBytes() == 0 || st.GetGuestMemoryAvailableBytes() == 0 || st.GetGuestCpuUsageNs() == 0 || st.GetAgentRssBytes() == 0 {
		t.Fatalf("stats = %+v", st)
	}
	if hasController(t, "memory") {
		if st.GetMemoryUsageBytes() == 0 || st.GetMemoryWorkingSetBytes() == 0 {
			t.Fatalf("memory controller present but no memory stats: %+v", st)
		}
	} else {
		t.Logf("memory controller not in %s: memory fields (%d) are checked by the VM suite", cgroupRoot, st.GetMemoryUsageBytes())
	}
	guest, err := e.cl.Stats(ctx, &api.StatsRequest{})
	if err != nil || guest.GetCpuUsageNs() != 0 || guest.GetGuestMemoryTotalBytes() == 0 {
		t.Fatalf("guest-only stats: %v %+v", err, guest)
	}
}

func TestLimitsNeedTheirController(t *testing.T) {
	e := newEnv(t)
	req := &api.CreateContainerRequest{ContainerId: uniqueID("limits"), RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial, MemoryLimitBytes: 64 << 20, CpuMillis: 500}
	_, err := e.cl.CreateContainer(ctxT(t), req)
	if hasController(t, "memory") && hasController(t, "cpu") {
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(cgroupRoot, "vkav", req.GetContainerId())
		mem, _ := os.ReadFile(filepath.Join(dir, "memory.max"))
		cpu, _ := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if strings.TrimSpace(string(mem)) != "67108864" || strings.TrimSpace(string(cpu)) != "50000 100000" {
			t.Fatalf("memory.max %q cpu.max %q", mem, cpu)
		}
		return
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("limits without controllers: %v, want FailedPrecondition", err)
	}
}

func TestLoggedOutputReachesTheLogPort(t *testing.T) {
	e := newEnv(t)
	frames := e.logFrames()
	id := e.createContainer(t, "logs")
	r := e.run(t, id, client.ExecOptions{Args: sh("echo to-log; echo err-log >&2; printf partial"), LogName: "main-0"})
	if r.err != nil || r.stdout != "to-log\npartial" || r.stderr != "err-log\n" {
		t.Fatalf("attached output: %v %q %q", r.err, r.stdout, r.stderr)
	}
	got := map[logframe.Stream]string{}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("log port closed; got %q", got)
			}
			if f.Name != "main-0" {
				t.Fatalf("frame for %q", f.Name)
			}
			if f.Stream == logframe.End {
				// The end comes after all of the output.
				if got[logframe.Stdout] != "to-log\npartial" || got[logframe.Stderr] != "err-log\n" {
					t.Fatalf("end frame after only %q", got)
				}
				return
			}
			got[f.Stream] += string(f.Data)
		case <-timeout:
			t.Fatalf("log frames so far: %q, and no end frame", got)
		}
	}
}
