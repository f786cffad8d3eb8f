package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// cgroupParent groups the containers' cgroups under the cgroup2 root.
const cgroupParent = "vkav"

// cpuPeriodUsec is the cpu.max period the agent writes; 100 ms is the
// kernel's default period and the one the kubelet uses for CPU limits.
const cpuPeriodUsec = 100000

// cgroup is one container's cgroup v2 directory.
type cgroup struct {
	path string
}

// createCgroup makes <root>/vkav/<id> (reusing it if present) and applies
// the limits. Controllers are enabled only where the kernel offers them;
// a requested limit whose controller is missing is an error.
func createCgroup(root, id string, memMax uint64, cpuMillis uint32) (*cgroup, error) {
	avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup controllers of %s: %w", root, err)
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(string(avail)) {
		have[c] = true
	}
	if memMax > 0 && !have["memory"] {
		return nil, fmt.Errorf("memory limit for %s: %w: memory", id, ErrControllerUnavailable)
	}
	if cpuMillis > 0 && !have["cpu"] {
		return nil, fmt.Errorf("cpu limit for %s: %w: cpu", id, ErrControllerUnavailable)
	}
	parent := filepath.Join(root, cgroupParent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", parent, err)
	}
	for _, dir := range []string{root, parent} {
		for _, ctl := range []string{"cpu", "memory", "pids"} {
			if !have[ctl] {
				continue
			}
			if err := writeCgroupFile(dir, "cgroup.subtree_control", "+"+ctl); err != nil {
				return nil, err
			}
		}
	}
	cg := &cgroup{path: filepath.Join(parent, id)}
	if err := os.Mkdir(cg.path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", cg.path, err)
	}
	if memMax > 0 {
		if err := writeCgroupFile(cg.path, "memory.max", strconv.FormatUint(memMax, 10)); err != nil {
			return nil, err
		}
		// The VM has no swap, but a guest with zram must not let the
		// container escape its limit through it.
		if _, err := os.Stat(filepath.Join(cg.path, "memory.swap.max")); err == nil {
			if err := writeCgroupFile(cg.path, "memory.swap.max", "0"); err != nil {
				return nil, err
			}
		}
	}
	if cpuMillis > 0 {
		quota := uint64(cpuMillis) * cpuPeriodUsec / 1000
		if err := writeCgroupFile(cg.path, "cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriodUsec)); err != nil {
			return nil, err
		}
	}
	return cg, nil
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}

// openDir returns a descriptor for SysProcAttr.CgroupFD (clone3's
// CLONE_INTO_CGROUP): the child starts inside the cgroup, with no window in
// which it runs (or forks) outside it.
func (c *cgroup) openDir() (int, error) {
	fd, err := unix.Open(c.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open cgroup %s: %w", c.path, err)
	}
	return fd, nil
}

// pids lists the processes in the cgroup.
func (c *cgroup) pids() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.path, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup.procs of %s: %w", c.path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// signal sends sig to every process in the cgroup. The cgroup is frozen
// meanwhile, so a process cannot fork a child the signal misses.
//
// cgroup.kill is not used: measured on Linux 6.18, once a cgroup has been
// killed through cgroup.kill, every child later started into it with
// CLONE_INTO_CGROUP is SIGKILLed at birth (the kernel compares the kill
// sequence of the parent's cgroup with the target's), which would kill
// every process of a restarted container.
func (c *cgroup) signal(sig syscall.Signal) error {
	frozen := writeCgroupFile(c.path, "cgroup.freeze", "1") == nil
	if frozen {
		defer writeCgroupFile(c.path, "cgroup.freeze", "0")
	}
	pids, err := c.pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
		}
	}
	return nil
}

// oomKills returns memory.events oom_kill (0 without the memory
// controller).
func (c *cgroup) oomKills() uint64 {
	ev, err := readKeyValues(filepath.Join(c.path, "memory.events"))
	if err != nil {
		return 0
	}
	return ev["oom_kill"]
}

// remove deletes the (empty) cgroup.
func (c *cgroup) remove() error {
	if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", c.path, err)
	}
	return nil
}

// readKeyValues parses the "key value" lines of cpu.stat, memory.stat and
// memory.events.
func readKeyValues(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKeyValues(b), nil
}

func parseKeyValues(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// readUintFile reads a one-number cgroup file such as memory.current.
func readUintFile(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// isCgroup2 reports whether dir is the root of a cgroup2 mount (or a
// directory inside one).
func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}
