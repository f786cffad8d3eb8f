//go:build darwin

package hostinfo

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func readMemory() (Memory, error) {
	total, err := unix.SysctlUint64("hw.memsize")
	if err != nil {
		return Memory{}, fmt.Errorf("sysctl hw.memsize: %w", err)
	}
	m := Memory{TotalBytes: total}
	// kern.memorystatus_level is the percentage of memory the kernel
	// considers available (what Activity Monitor's memory pressure
	// reflects); free + speculative pages are the fallback.
	if level, err := unix.SysctlUint32("kern.memorystatus_level"); err == nil && level <= 100 {
		m.AvailableBytes = total / 100 * uint64(level)
		return m, nil
	}
	page, err := unix.SysctlUint32("hw.pagesize")
	if err != nil {
		return Memory{}, fmt.Errorf("sysctl hw.pagesize: %w", err)
	}
	free, err := unix.SysctlUint32("vm.page_free_count")
	if err != nil {
		return Memory{}, fmt.Errorf("sysctl vm.page_free_count: %w", err)
	}
	spec, _ := unix.SysctlUint32("vm.page_speculative_count")
	m.AvailableBytes = uint64(free+spec) * uint64(page)
	return m, nil
}

// cpuTime: the host's CPU ticks come from host_statistics/host_processor_info,
// Mach calls that need cgo.
func cpuTime() (time.Duration, error) {
	return 0, fmt.Errorf("host CPU time on darwin: %w", ErrNotSupported)
}

func bootTime() (time.Time, error) {
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return time.Time{}, fmt.Errorf("sysctl kern.boottime: %w", err)
	}
	return time.Unix(tv.Unix()), nil
}

func readOS() (OS, error) {
	o := OS{Image: "macOS", Arch: runtime.GOARCH}
	if v, err := unix.Sysctl("kern.osproductversion"); err == nil {
		o.Image += " " + v
	}
	rel, err := unix.Sysctl("kern.osrelease")
	if err != nil {
		return OS{}, fmt.Errorf("sysctl kern.osrelease: %w", err)
	}
	o.KernelVersion = "Darwin " + rel
	if v, err := unix.Sysctl("kern.bootsessionuuid"); err == nil {
		o.BootID = strings.ToLower(v)
	}
	// The hardware UUID lives in IOKit (cgo); kern.uuid identifies the
	// kernel build, not the machine, so it is not used.
	return o, nil
}
