package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// userHZ is the unit of /proc/stat's CPU times: USER_HZ, 100 on every
// architecture Linux supports for user space (see proc(5)).
const userHZ = 100

// Stats reports the container's cgroup and the guest's totals.
func (s *Server) Stats(ctx context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
	resp := &api.StatsResponse{TimestampUnixNs: time.Now().UnixNano(), AgentRssBytes: selfRSS()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		resp.GuestMemoryTotalBytes = statusKiB(b, "MemTotal:") * 1024
		resp.GuestMemoryAvailableBytes = statusKiB(b, "MemAvailable:") * 1024
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		resp.GuestCpuUsageNs = procStatBusyNs(b)
	}
	if req.GetContainerId() == "" {
		return resp, nil
	}
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.scratch, &st); err == nil {
		resp.ScratchTotalBytes = st.Blocks * uint64(st.Bsize)
		resp.ScratchUsedBytes = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	if c.cgroup != nil {
		if err := cgroupStats(c.cgroup.path, resp); err != nil {
			return nil, fmt.Errorf("stats of container %s: %w", c.id, err)
		}
	}
	return resp, nil
}

// cgroupStats fills the container fields from a cgroup v2 directory. Files
// of controllers that are not enabled are absent and leave zeros; cpu.stat
// is always present.
func cgroupStats(dir string, resp *api.StatsResponse) error {
	cpu, err := readKeyValues(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return err
	}
	resp.CpuUsageNs = cpu["usage_usec"] * 1000
	if cur, err := readUintFile(filepath.Join(dir, "memory.current")); err == nil {
		resp.MemoryUsageBytes = cur
		if ms, err := readKeyValues(filepath.Join(dir, "memory.stat")); err == nil {
			resp.MemoryRssBytes = ms["anon"]
			// The kubelet's working set: usage minus inactive file pages,
			// floored at zero.
			if inactive := ms["inactive_file"]; inactive < cur {
				resp.MemoryWorkingSetBytes = cur - inactive
			}
		}
	}
	if ev, err := readKeyValues(filepath.Join(dir, "memory.events")); err == nil {
		resp.OomKills = ev["oom_kill"]
	}
	if n, err := readUintFile(filepath.Join(dir, "pids.current")); err == nil {
		resp.Pids = n
	} else if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
		// Without the pids controller, count the processes.
		resp.Pids = uint64(len(strings.Fields(string(b))))
	}
	return nil
}

// procStatBusyNs sums the non-idle CPU time of /proc/stat's "cpu" line
// (user nice system idle iowait irq softirq steal ...): everything except
// idle and iowait.
func procStatBusyNs(b []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var busy uint64
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are in user already
				continue
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			busy += n
		}
		return busy * (1e9 / userHZ)
	}
	return 0
}
