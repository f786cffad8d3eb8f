package agent

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// Info reports the agent's version and state.
func (s *Server) Info(ctx context.Context, _ *api.InfoRequest) (*api.InfoResponse, error) {
	resp := &api.InfoResponse{
		Version:       s.cfg.Version,
		KernelRelease: kernelRelease(),
		ReadyUptimeNs: int64(s.readyUptime),
		UptimeNs:      int64(uptime()),
		AgentRssBytes: selfRSS(),
		SetupDone:     s.setupDone.Load(),
		ModulesDone:   true,
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		resp.AgentRssAnonBytes = statusKiB(b, "RssAnon:") * 1024
		resp.AgentRssFileBytes = (statusKiB(b, "RssFile:") + statusKiB(b, "RssShmem:")) * 1024
	}
	if m := s.cfg.Modules; m != nil {
		resp.Modules = m.Loaded()
		done := m.Done()
		if st, ok := m.(interface{ Settled() <-chan struct{} }); ok {
			done = st.Settled() // a template guest holds some for Setup
		}
		select {
		case <-done:
		default:
			resp.ModulesDone = false
		}
	}
	return resp, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// uptime is the time since boot, including time suspended.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// selfRSS reads VmRSS of the agent from /proc/self/status.
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return statusKiB(b, "VmRSS:") * 1024
}

// statusKiB finds a "Key:   123 kB" line in /proc status or meminfo text.
func statusKiB(b []byte, key string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		f := strings.Fields(line[len(key):])
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		return n
	}
	return 0
}
