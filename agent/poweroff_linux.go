package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PowerOps are the system calls of powering off, separate so the sequence
// is tested without rebooting anything.
type PowerOps struct {
	// Signal sends sig to every process but PID 1 (kill(-1, sig)).
	Signal func(sig syscall.Signal) error
	// Remaining lists the user processes still alive, PID 1 excluded.
	Remaining func() []int
	Sync      func()
	// UnmountAll unmounts every filesystem it can.
	UnmountAll func() error
	// Halt powers the machine off (reboot(LINUX_REBOOT_CMD_POWER_OFF)).
	Halt  func() error
	Sleep func(time.Duration)
}

// GuestPowerOps are the real operations for PID 1 in the guest.
func GuestPowerOps() PowerOps {
	return PowerOps{
		Signal:     func(sig syscall.Signal) error { return syscall.Kill(-1, sig) },
		Remaining:  func() []int { return userProcesses("/proc", os.Getpid()) },
		Sync:       unix.Sync,
		UnmountAll: func() error { return unmountUnderRoot() },
		Halt:       func() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) },
		Sleep:      time.Sleep,
	}
}

// PowerOff ends the guest: SIGTERM everything, wait up to grace, SIGKILL,
// sync, unmount, power off. It returns only if the final call fails.
func PowerOff(ctx context.Context, ops PowerOps, grace time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_ = ops.Signal(syscall.SIGTERM)
	waitGone(ctx, ops, grace)
	if left := ops.Remaining(); len(left) > 0 {
		log.Warn("processes left after SIGTERM; killing", "pids", left)
		_ = ops.Signal(syscall.SIGKILL)
		waitGone(ctx, ops, killWait)
	}
	ops.Sync()
	if err := ops.UnmountAll(); err != nil {
		log.Warn("unmount before power-off", "err", err)
	}
	ops.Sync()
	log.Info("powering off")
	return ops.Halt()
}

func waitGone(ctx context.Context, ops PowerOps, d time.Duration) {
	const step = 20 * time.Millisecond
	for waited := time.Duration(0); waited < d && ctx.Err() == nil; waited += step {
		if len(ops.Remaining()) == 0 {
			return
		}
		ops.Sleep(step)
	}
}

// userProcesses lists processes under procDir other than self and PID 1
// that are not kernel threads (flag PF_KTHREAD in /proc/<pid>/stat).
func userProcesses(procDir string, self int) []int {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		if !isKernelThread(string(b)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pfKthread is PF_KTHREAD from include/linux/sched.h.
const pfKthread = 0x00200000

// isKernelThread reads the flags field (9th) of a /proc/<pid>/stat line;
// the command name (2nd) is parenthesised and may hold spaces.
func isKernelThread(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(stat[i+1:])
	// After ")": state(3) ppid pgrp session tty_nr tpgid flags(9).
	if len(f) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfKthread != 0
}

// unmountUnderRoot unmounts everything but / itself, newest first.
func unmountUnderRoot() error {
	mps, err := mountPoints("")
	if err != nil {
		return err
	}
	var errs []string
	for i := len(mps) - 1; i >= 0; i-- {
		if mps[i] == "/" {
			continue
		}
		if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			errs = append(errs, mps[i]+": "+err.Error())
		}
	}
	if len(errs) > 0 {
		return &os.PathError{Op: "unmount", Path: strings.Join(errs, "; "), Err: syscall.EBUSY}
	}
	return nil
}
