package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/security"
)

// containerSecurity is a container's api.Security, checked and compiled
// once at CreateContainer.
type containerSecurity struct {
	caps       []string // names, for the seccomp profile's conditions
	capNumbers []int
	// noNewPrivs nil: set for processes not running as root.
	noNewPrivs   *bool
	readOnlyRoot bool
	seccomp      []byte // packed sock_filter array; nil: unconfined
	sysctls      [][2]string
	unmasked     bool
	fsGroup      *uint32
}

// resolveSecurity checks a container's Security against this guest.
func (s *Server) resolveSecurity(sec *api.Security) (*containerSecurity, error) {
	out := &containerSecurity{caps: security.DefaultCapabilities}
	if sec != nil {
		out.caps = sec.GetCapabilities()
		if sec.NoNewPrivileges != nil {
			v := sec.GetNoNewPrivileges()
			out.noNewPrivs = &v
		}
		out.readOnlyRoot = sec.GetReadOnlyRoot()
		out.unmasked = sec.GetUnmaskedProc()
		if sec.FsGroup != nil {
			g := sec.GetFsGroup()
			out.fsGroup = &g
		}
	}
	last := lastCapability(s.cfg.ProcSysDir)
	for _, name := range out.caps {
		n, ok := security.CapabilityNumber(name)
		if !ok {
			return nil, fmt.Errorf("capability %q: unknown: %w", name, ErrInvalidArgument)
		}
		if n <= last && !slices.Contains(out.capNumbers, n) {
			out.capNumbers = append(out.capNumbers, n)
		}
	}
	filter, err := compileSeccomp(sec.GetSeccomp(), sec.GetSeccompProfileJson(), out.caps)
	if err != nil {
		return nil, err
	}
	out.seccomp = packSeccomp(filter)
	for name, value := range sec.GetSysctls() {
		name = security.NormalizeSysctl(name)
		if err := security.CheckSysctl(name, value); err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrInvalidArgument)
		}
		if name == "net.ipv4.ip_local_port_range" {
			cur, err := os.ReadFile(filepath.Join(s.cfg.ProcSysDir, "net/ipv4/ip_local_port_range"))
			if err != nil {
				return nil, fmt.Errorf("read the VM's port range: %w", err)
			}
			if err := security.PortRangeWithin(value, string(cur)); err != nil {
				return nil, fmt.Errorf("%v: %w", err, ErrInvalidArgument)
			}
		}
		out.sysctls = append(out.sysctls, [2]string{name, strings.TrimSpace(value)})
	}
	slices.SortFunc(out.sysctls, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out, nil
}

// lastCapability is the kernel's highest capability number
// (/proc/sys/kernel/cap_last_cap); capset refuses bits beyond it.
func lastCapability(procSys string) int {
	b, err := os.ReadFile(filepath.Join(procSys, "kernel/cap_last_cap"))
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return len(security.Capabilities) - 1
}

// initConfigFor is the starter's input for p; newNS for the container's
// first process.
func (p *process) initConfigFor(newNS bool, hostname string, cgroups bool) *initConfig {
	sec := p.c.sec
	cfg := &initConfig{
		NewNamespaces: newNS,
		Cgroups:       cgroups,
		Exe:           p.exe,
		Argv:          p.argv,
		Env:           p.env,
		Cwd:           p.cwd,
		UID:           p.cred.Uid,
		GID:           p.cred.Gid,
		Groups:        p.cred.Groups,
		Caps:          sec.capNumbers,
		NoNewPrivs:    p.cred.Uid != 0,
		Seccomp:       sec.seccomp,
	}
	if sec.noNewPrivs != nil {
		cfg.NoNewPrivs = *sec.noNewPrivs
	}
	if newNS {
		cfg.Rootfs = p.c.rootfs
		cfg.Hostname = hostname
		cfg.Sysctls = sec.sysctls
		cfg.Unmasked = sec.unmasked
		cfg.ReadOnlyRoot = sec.readOnlyRoot
	}
	return cfg
}

// inNamespacesOf runs spawn on a thread that joined the PID (for its
// children), UTS and IPC namespaces of the process behind pidfd, so what
// spawn forks starts inside them; the starter joins the mount and cgroup
// namespaces itself (its executable, /proc/self/exe, is not reachable from
// the container's mount namespace). The thread is not given back: its
// goroutine ends locked to it and the runtime ends the thread.
func inNamespacesOf(pidfd int, spawn func() (int, error)) (int, error) {
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never ended; the binary keeps its main
			// goroutine on it (runtime.LockOSThread in init), so this
			// does not happen.
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("join a container's namespaces: would change the main thread")}
			return
		}
		if err := unix.Setns(pidfd, unix.CLONE_NEWPID|unix.CLONE_NEWUTS|unix.CLONE_NEWIPC); err != nil {
			if err == unix.ESRCH || err == unix.EINVAL {
				// The first process exited (a zombie has no namespaces).
				err = fmt.Errorf("%w: the container's first process has exited: %w", err, ErrFailedPrecondition)
			}
			ch <- result{err: fmt.Errorf("join the container's namespaces: %w", err)}
			return
		}
		pid, err := spawn()
		ch <- result{pid, err}
	}()
	r := <-ch
	return r.pid, r.err
}

// fsGroups is the fsGroup as a list of supplementary groups.
func (sec *containerSecurity) fsGroups() []uint32 {
	if sec == nil || sec.fsGroup == nil {
		return nil
	}
	return []uint32{*sec.fsGroup}
}
