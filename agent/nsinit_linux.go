package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A container's process is started by the agent binary itself, executed
// again as "vkav-init" (runc's `runc init`, Apple's vmexec): it sets up
// what must be done inside the container's namespaces and in the process
// that becomes the container's — mounts and pivot_root for the first
// process, then credentials, capabilities, no_new_privs and seccomp — and
// executes the command. Go cannot run code between fork and exec, and the
// agent must not change its own threads' credentials. The agent starts it
// through the Reaper, so the exec'd command stays the agent's child.
//
// File descriptors of the starter: 0-2 the process's stdio, 3 its
// initConfig (JSON, read to EOF), 4 a close-on-exec status pipe (empty
// when the command was executed; an errno and a message otherwise), 5 for
// a process joining a running container: a pidfd of the container's first
// process, for its mount and cgroup namespaces.

// InitArg0 is argv[0] of the agent binary executed as the starter.
const InitArg0 = "vkav-init"

const (
	initConfigFD = 3
	initStatusFD = 4
	initPidFD    = 5
)

// initConfig is the starter's whole input.
type initConfig struct {
	// NewNamespaces: the first process of the container, in new mount,
	// PID, UTS and IPC namespaces (cloned so), which sets them up.
	NewNamespaces bool `json:"newNamespaces,omitempty"`
	// Rootfs is the container's root as the agent sees it.
	Rootfs   string `json:"rootfs,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Sysctls are written in order, before /proc/sys turns read-only.
	Sysctls [][2]string `json:"sysctls,omitempty"`
	// Cgroups: a new cgroup namespace with cgroup2 at /sys/fs/cgroup (or,
	// joining, the first process's cgroup namespace).
	Cgroups      bool `json:"cgroups,omitempty"`
	Unmasked     bool `json:"unmasked,omitempty"`
	ReadOnlyRoot bool `json:"readOnlyRoot,omitempty"`

	Exe  string   `json:"exe"`
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`

	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	// Caps are the capability numbers kept (bounding, permitted,
	// effective); all others are dropped.
	Caps       []int  `json:"caps"`
	NoNewPrivs bool   `json:"noNewPrivs,omitempty"`
	Seccomp    []byte `json:"seccomp,omitempty"` // struct sock_filter array
}

// maskedPaths and readonlyPaths are containerd's and moby's defaults
// (containerd pkg/oci populateDefaultUnixSpec, moby oci/defaults.go).
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// MaybeContainerInit runs the starter when this binary was executed as
// one (argv[0] is InitArg0) and never returns then. main calls it first;
// so must a test binary whose tests start container processes.
func MaybeContainerInit() {
	if len(os.Args) == 0 || os.Args[0] != InitArg0 {
		return
	}
	// Every step below changes this thread (namespaces, credentials,
	// seccomp) and the exec happens from it.
	runtime.LockOSThread()
	errno, err := containerInit()
	status := os.NewFile(initStatusFD, "status")
	msg := make([]byte, 4, 4+len(err.Error()))
	binary.LittleEndian.PutUint32(msg, uint32(errno))
	msg = append(msg, err.Error()...)
	_, _ = status.Write(msg)
	os.Exit(127)
}

// containerInit returns only on failure, with the errno that caused it
// (0 when there is none).
func containerInit() (syscall.Errno, error) {
	// Not dumpable: nothing in the container may ptrace the starter or
	// open its /proc files while it still holds the agent's privileges.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return errnoOf(err), fmt.Errorf("set non-dumpable: %w", err)
	}
	// Nothing but stdio reaches the command: whatever the agent leaked
	// to this process (and the starter's own pipes) closes on exec.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return errnoOf(err), fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	f := os.NewFile(initConfigFD, "config")
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	f.Close()
	if err != nil {
		return errnoOf(err), fmt.Errorf("read the process's configuration: %w", err)
	}
	var cfg initConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return 0, fmt.Errorf("decode the process's configuration: %w", err)
	}
	if cfg.NewNamespaces {
		if err := setupNamespaces(&cfg); err != nil {
			return errnoOf(err), err
		}
	} else {
		// The agent put this process in the container's PID, UTS and IPC
		// namespaces; the mount namespace is joined here, on this thread
		// (which gets a root and working directory of its own first), and
		// the cgroup namespace after the agent placed it in the cgroup.
		flags := unix.CLONE_NEWNS
		if cfg.Cgroups {
			flags |= unix.CLONE_NEWCGROUP
		}
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return errnoOf(err), fmt.Errorf("unshare filesystem state: %w", err)
		}
		if err := unix.Setns(initPidFD, flags); err != nil {
			return errnoOf(err), fmt.Errorf("join the container's mount namespace: %w", err)
		}
	}
	unix.Close(initPidFD)
	// The agent's -1000 would be inherited: a container's process must be
	// an ordinary OOM victim.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("0"), 0); err != nil {
		return errnoOf(err), fmt.Errorf("reset oom_score_adj: %w", err)
	}
	if err := unix.Chdir(cfg.Cwd); err != nil {
		return errnoOf(err), fmt.Errorf("chdir to %s: %w", cfg.Cwd, err)
	}
	argv0, err := unix.BytePtrFromString(cfg.Exe)
	if err != nil {
		return 0, fmt.Errorf("executable %q: %w", cfg.Exe, err)
	}
	argv, err := syscall.SlicePtrFromStrings(cfg.Argv)
	if err != nil {
		return 0, fmt.Errorf("arguments: %w", err)
	}
	envv, err := syscall.SlicePtrFromStrings(cfg.Env)
	if err != nil {
		return 0, fmt.Errorf("environment: %w", err)
	}
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, so it
	// goes before the capabilities are dropped (as runc orders it); with
	// it, as late as possible.
	if len(cfg.Seccomp) > 0 && !cfg.NoNewPrivs {
		if err := loadSeccomp(cfg.Seccomp); err != nil {
			return errnoOf(err), err
		}
	}
	if err := setCredentials(&cfg); err != nil {
		return errnoOf(err), err
	}
	if cfg.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return errnoOf(err), fmt.Errorf("set no_new_privs: %w", err)
		}
		if len(cfg.Seccomp) > 0 {
			if err := loadSeccomp(cfg.Seccomp); err != nil {
				return errnoOf(err), err
			}
		}
	}
	_, _, e := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(argv0)), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	return e, fmt.Errorf("exec %s: %w", cfg.Exe, e)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// setupNamespaces prepares the first process's new namespaces: the
// container's own /proc, cgroup2 and mqueue, the masked and read-only
// paths, sysctls and hostname, then pivot_root into the container's root
// and detaches the agent's mounts from the container's view.
func setupNamespaces(cfg *initConfig) error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := cfg.Rootfs
	if err := mountIn(root, "/proc", true, "proc", "proc", nosuid|nodev|noexec, ""); err != nil {
		return err
	}
	if cfg.Cgroups {
		// Here, not at clone: the cgroup namespace is rooted at the cgroup
		// the process is in, and the agent placed it in the container's.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("new cgroup namespace: %w", err)
		}
		if err := mountIn(root, "/sys/fs/cgroup", true, "cgroup2", "cgroup2", nosuid|nodev|noexec|unix.MS_RDONLY, ""); err != nil {
			return err
		}
	}
	if err := mountIn(root, "/dev/mqueue", true, "mqueue", "mqueue", nosuid|nodev|noexec, ""); err != nil {
		return err
	}
	// Sysctls through the agent's /proc: they land in this process's
	// namespaces (IPC, and the VM's network) whoever's /proc it is.
	for _, kv := range cfg.Sysctls {
		p := "/proc/sys/" + strings.ReplaceAll(kv[0], ".", "/")
		if err := os.WriteFile(p, []byte(kv[1]), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if !cfg.Unmasked {
		if err := maskPaths(root); err != nil {
			return err
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if err := pivotRoot(root); err != nil {
		return err
	}
	if cfg.ReadOnlyRoot {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make the root filesystem read-only: %w", err)
		}
	}
	return nil
}

// maskPaths hides what runc hides: files under /dev/null, directories under
// an empty read-only tmpfs; and makes the read-only paths read-only.
func maskPaths(root string) error {
	for _, p := range maskedPaths {
		f, err := openInRoot(root, p, unix.O_PATH, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = unix.Mount("tmpfs", procFDPath(f), "tmpfs", unix.MS_RDONLY, "")
			} else {
				err = unix.Mount("/dev/null", procFDPath(f), "", unix.MS_BIND, "")
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		f, err := openInRoot(root, p, unix.O_PATH, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		target := procFDPath(f)
		err = unix.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, "")
		f.Close()
		if err == nil {
			// The bind is a new mount on top: reach it by path again.
			err = bindRemountReadOnly(root, p)
		}
		if err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

func bindRemountReadOnly(root, p string) error {
	f, err := openInRoot(root, p, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Mount("", procFDPath(f), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|nosuid|nodev|noexec, "")
}

// pivotRoot makes root the root of this mount namespace and detaches the
// old one (runc's pivotRoot: pivot_root(".", ".") stacks the old root on
// the new one, then it is lazily unmounted). The guest's root must not be
// the initramfs itself (LeaveInitramfs).
func pivotRoot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldRoot)
	newRoot, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open container root: %w", err)
	}
	defer unix.Close(newRoot)
	if err := unix.Fchdir(newRoot); err != nil {
		return fmt.Errorf("chdir to container root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root a slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// setCredentials switches this thread to the process's user and groups
// and capability sets in runc's order: bounding set first, then the ids
// with the capabilities kept across the switch, then the final sets.
func setCredentials(cfg *initConfig) error {
	keep := map[int]bool{}
	for _, c := range cfg.Caps {
		keep[c] = true
	}
	for c := 0; c < 64; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	// Raw calls: the thread's credentials only (Go's Setuid and friends
	// change every thread).
	groups := make([]uint32, len(cfg.Groups))
	copy(groups, cfg.Groups)
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", groups, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cfg.GID), uintptr(cfg.GID), uintptr(cfg.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", cfg.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cfg.UID), uintptr(cfg.UID), uintptr(cfg.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", cfg.UID, e)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keep-capabilities: %w", err)
	}
	var set [2]uint32
	for _, c := range cfg.Caps {
		if c >= 0 && c < 64 {
			set[c/32] |= 1 << (c % 32)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: set[0], Permitted: set[0]},
		{Effective: set[1], Permitted: set[1]},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// packSeccomp and loadSeccomp carry a filter through the JSON config as
// the kernel's struct sock_filter array.
func packSeccomp(prog []unix.SockFilter) []byte {
	if len(prog) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0])))
}

func loadSeccomp(packed []byte) error {
	n := len(packed) / int(unsafe.Sizeof(unix.SockFilter{}))
	if n == 0 || n > unix.BPF_MAXINSNS {
		return fmt.Errorf("seccomp filter of %d bytes: %w", len(packed), unix.EINVAL)
	}
	prog := make([]unix.SockFilter, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(packed)), packed)
	fprog := unix.SockFprog{Len: uint16(n), Filter: &prog[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("load seccomp filter: %w", e)
	}
	runtime.KeepAlive(prog)
	return nil
}

// LeaveInitramfs makes the guest's root a bind mount of the initramfs, as
// switch_root would with a real root: pivot_root refuses a root that is
// the initial rootfs itself, and containers' namespaces need it. PID 1
// calls it before mounting anything.
func LeaveInitramfs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("leave the initramfs: %w", err)
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("leave the initramfs: bind / on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("leave the initramfs: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("leave the initramfs: move the bind to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("leave the initramfs: chroot: %w", err)
	}
	return unix.Chdir("/")
}

// InitramfsBind is where PID 1 binds the initramfs (LeaveInitramfs).
const InitramfsBind = "/.vkav-root"
