package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SystemMount is one filesystem PID 1 mounts at boot.
type SystemMount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// SystemMounts are the guest's own filesystems, in mount order. The initrd
// is the root (rootfs); nothing else is mounted when the kernel starts /init.
var SystemMounts = []SystemMount{
	{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
	{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""},
	{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"},
	// ptmxmode: /dev/ptmx is a device node of devtmpfs; the instance's own
	// ptmx must be usable too.
	{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"shm", "/dev/shm", "tmpfs", nosuid | nodev | noexec, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid | nodev | noexec, "nsdelegate"},
}

// MountSystem mounts SystemMounts under root ("/" in the guest). A mount
// point that already holds the filesystem (EBUSY) is fine; other failures
// are collected and the rest is still mounted.
func MountSystem(root string, mounts []SystemMount) error {
	var errs []error
	for _, m := range mounts {
		target := root + m.Target
		if root == "/" {
			target = m.Target
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create mount point %s: %w", target, err))
			continue
		}
		if err := unix.Mount(m.Source, target, m.FSType, m.Flags, m.Data); err != nil && err != unix.EBUSY {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.FSType, target, err))
		}
	}
	return errors.Join(errs...)
}

// SetOOMScoreAdj sets a process's oom_score_adj; PID 1 uses -1000 so the
// kernel's OOM killer never picks the agent (its death panics the kernel).
func SetOOMScoreAdj(pid, adj int) error {
	p := "/proc/self/oom_score_adj"
	if pid != 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(adj)), 0); err != nil {
		return fmt.Errorf("set oom_score_adj %d: %w", adj, err)
	}
	return nil
}

// ConsoleStdio points fds 0-2 at console when they are not open: the
// kernel opens /dev/console for init only if the initrd has the node.
func ConsoleStdio(console string) error {
	var st unix.Stat_t
	if unix.Fstat(2, &st) == nil {
		return nil
	}
	fd, err := unix.Open(console, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", console, err)
	}
	for i := 0; i <= 2; i++ {
		if fd != i {
			if err := unix.Dup2(fd, i); err != nil {
				return fmt.Errorf("dup console to fd %d: %w", i, err)
			}
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}
