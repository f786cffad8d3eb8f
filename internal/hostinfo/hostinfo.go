// Package hostinfo reads what the node reports about the machine it runs on:
// CPUs, memory, cumulative CPU time, free disk space, the OS and kernel, and
// the address other machines reach it at.
//
// Linux reads /proc and /sys; darwin uses sysctl through golang.org/x/sys
// (no cgo). Figures a platform cannot give without cgo return
// ErrNotSupported: on darwin that is CPUTime (host_statistics is a Mach
// call) and the hardware UUID (IOKit).
package hostinfo

import (
	"errors"
	"os"
	"runtime"
	"time"
)

// ErrNotSupported: this figure is not available on this platform.
var ErrNotSupported = errors.New("not supported on this platform")

// Memory is the host's physical memory.
type Memory struct {
	TotalBytes uint64
	// AvailableBytes is what new work can use without swapping: Linux's
	// MemAvailable; on darwin the kernel's memorystatus level.
	AvailableBytes uint64
}

// Disk is the file system holding a path.
type Disk struct {
	TotalBytes uint64
	// FreeBytes is what an unprivileged writer can still use (f_bavail).
	FreeBytes  uint64
	UsedBytes  uint64
	Inodes     uint64
	InodesFree uint64
}

// UsedPercent is how full the file system is as df shows it: used /
// (used + available to unprivileged writers), rounded up.
func (d Disk) UsedPercent() int {
	total := d.UsedBytes + d.FreeBytes
	if total == 0 {
		return 0
	}
	return int((d.UsedBytes*100 + total - 1) / total)
}

// OS describes the host for the node's NodeInfo.
type OS struct {
	// Image is a human name of the OS release ("Debian GNU/Linux 12
	// (bookworm)", "macOS 15.1").
	Image string
	// KernelVersion is the kernel release ("6.1.0-28-cloud-amd64",
	// "Darwin 24.1.0").
	KernelVersion string
	// Arch is the Go architecture name (amd64, arm64).
	Arch string
	// MachineID, BootID and SystemUUID identify the machine, the current
	// boot and the hardware; empty where the platform has no such value.
	MachineID  string
	BootID     string
	SystemUUID string
}

// CPUCount is the number of CPUs this process may use.
func CPUCount() int { return runtime.NumCPU() }

// Hostname is the machine's host name as the kernel reports it.
func Hostname() (string, error) { return os.Hostname() }

// ReadMemory returns the host's total and available memory.
func ReadMemory() (Memory, error) { return readMemory() }

// CPUTime is the cumulative busy time of all CPUs since boot (user, nice,
// system, irq, softirq and steal; idle and iowait excluded), the figure the
// kubelet reports as the node's usageCoreNanoSeconds. ErrNotSupported on
// darwin.
func CPUTime() (time.Duration, error) { return cpuTime() }

// BootTime is when the host booted.
func BootTime() (time.Time, error) { return bootTime() }

// ReadOS describes the host's OS and kernel.
func ReadOS() (OS, error) { return readOS() }
