package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// Linux x86 and arm64 (what sysconf(_SC_CLK_TCK) returns there).
const userHZ = 100

// processCPU is the user+system CPU time a process and all its threads
// have used so far: fields 14 and 15 (utime, stime) of /proc/<pid>/stat.
// Under TCG the guest's work is QEMU's CPU time, which other load on the
// host disturbs much less than wall time.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	return parseStatCPU(data)
}

func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 || end+2 > len(stat) {
		return 0, fmt.Errorf("parse /proc stat %q: no command name", stat)
	}
	fields := strings.Fields(string(stat[end+2:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the name, want at least 13", len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc stat utime %q stime %q", fields[11], fields[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// processMemory reads Rss and Pss from /proc/<pid>/smaps_rollup (Linux
// 4.14+).
func processMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memory{}, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	return parseSmapsRollup(data)
}

func parseSmapsRollup(data []byte) (memory, error) {
	f, err := hostinfo.ParseKBFields(data, "Rss", "Pss")
	if err != nil {
		return memory{}, fmt.Errorf("smaps_rollup: %w", err)
	}
	return memory{RSS: f["Rss"], PSS: f["Pss"]}, nil
}

// statusBytes finds "Key:   123 kB" in /proc/<pid>/status text.
func statusBytes(status, key string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
