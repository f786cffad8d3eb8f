package hostinfo

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/stat. It is fixed at 100 in
// the kernel's user-space ABI on every architecture we run on (USER_HZ,
// proc(5)); reading it through sysconf(_SC_CLK_TCK) would need cgo.
const userHZ = 100

func readMemory() (Memory, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Memory{}, fmt.Errorf("read host memory: %w", err)
	}
	f, err := ParseKBFields(b, "MemTotal", "MemAvailable")
	if err != nil {
		return Memory{}, fmt.Errorf("read host memory from /proc/meminfo (MemAvailable needs Linux 3.14+): %w", err)
	}
	return Memory{TotalBytes: f["MemTotal"], AvailableBytes: f["MemAvailable"]}, nil
}

// procStatLine returns the fields after key on the /proc/stat line that
// starts with key.
func procStatLine(key string) ([]string, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) > 0 && f[0] == key {
			return f[1:], nil
		}
	}
	return nil, fmt.Errorf("no %q line in /proc/stat", key)
}

func cpuTime() (time.Duration, error) {
	f, err := procStatLine("cpu")
	if err != nil {
		return 0, fmt.Errorf("read host CPU time: %w", err)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice];
	// guest time is already part of user (proc(5)).
	busy := []int{0, 1, 2, 5, 6, 7}
	var ticks uint64
	for _, i := range busy {
		if i >= len(f) {
			break
		}
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat cpu field %d: %w", i, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

func bootTime() (time.Time, error) {
	f, err := procStatLine("btime")
	if err != nil {
		return time.Time{}, fmt.Errorf("read host boot time: %w", err)
	}
	sec, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse /proc/stat btime: %w", err)
	}
	return time.Unix(sec, 0), nil
}
