package hostinfo

import (
	"bufio"
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
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return Memory{}, fmt.Errorf("read host memory: %w", err)
	}
	defer f.Close()
	var m Memory
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "MemTotal":
			dst, haveTotal = &m.TotalBytes, true
		case "MemAvailable":
			dst, haveAvail = &m.AvailableBytes, true
		default:
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("parse /proc/meminfo %s: %w", key, err)
		}
		*dst = kb * 1024
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	if !haveTotal || !haveAvail {
		return Memory{}, fmt.Errorf("read host memory: MemTotal or MemAvailable missing from /proc/meminfo (kernel older than 3.14?)")
	}
	return m, nil
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
