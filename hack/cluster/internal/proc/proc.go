// Package proc starts the control-plane components as detached processes and
// stops them again from a later, unrelated invocation of the tool.
//
// Each process gets its own session (so it is its own process group and a
// Ctrl-C in the terminal that ran `cluster up` does not reach it), stdin from
// /dev/null and its output in a log file. Its pid goes into a pid file; since
// pids are reused, a pid is only trusted while the process has the recorded
// start time and /proc/<pid>/exe still is the binary that was started.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
)

// Spec is one process to start.
type Spec struct {
	Name    string   // component name: log file <name>.log, pid file <name>.pid
	Path    string   // absolute binary path
	Args    []string // without argv[0]
	NetNS   string   // network namespace name ("" = the caller's)
	Dir     string   // cluster dir: pid file goes here
	LogDir  string   // log file goes here
	WorkDir string
}

// LogPath is where the process's stdout and stderr go.
func (s Spec) LogPath() string { return filepath.Join(s.LogDir, s.Name+".log") }

// PidPath is the pid file of the component name in dir.
func PidPath(dir, name string) string { return filepath.Join(dir, name+".pid") }

// Start launches s detached and records its pid. It does not wait for it.
func Start(s Spec) (int, error) {
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("starting %s: opening log: %w", s.Name, err)
	}
	defer logf.Close() // the child has its own copy
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	defer devnull.Close()

	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.WorkDir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(logf, "# %s %s\n", s.Path, strings.Join(s.Args, " "))

	start := cmd.Start
	if s.NetNS != "" {
		start = func() error { return netns.Do(s.NetNS, cmd.Start) }
	}
	if err := start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	pid := cmd.Process.Pid
	// Nobody will Wait for it from here: release it so the runtime forgets it.
	// When this process exits, the child is reparented and reaped by init.
	_ = cmd.Process.Release()
	// The start time pins the pid to this very process (see ReadPid).
	rec := fmt.Sprintf("%d %s\n", pid, startTime(pid))
	if err := os.WriteFile(PidPath(s.Dir, s.Name), []byte(rec), 0o644); err != nil {
		return pid, fmt.Errorf("starting %s: writing pid file: %w", s.Name, err)
	}
	return pid, nil
}

// ReadPid returns the pid recorded for name in dir if that very process
// (same pid, same start time, same binary bin) still runs; 0 otherwise.
func ReadPid(dir, name, bin string) (int, error) {
	b, err := os.ReadFile(PidPath(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading pid of %s: %w", name, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, fmt.Errorf("pid file of %s is corrupt: %q", name, b)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file of %s is corrupt: %q", name, b)
	}
	if !Alive(pid) || startTime(pid) != fields[1] || !runs(pid, bin) {
		return 0, nil
	}
	return pid, nil
}

// startTime is field 22 of /proc/<pid>/stat (clock ticks since boot), or "?".
func startTime(pid int) string {
	f := statFields(pid)
	if len(f) < 20 {
		return "?"
	}
	return f[19] // fields after "(comm)" start at field 3
}

// statFields returns the fields of /proc/<pid>/stat after "pid (comm)"; comm
// may contain spaces and parentheses, hence the last ')'.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// runs reports whether pid executes bin (a reused pid executes something else).
func runs(pid int, bin string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	if resolved, err := filepath.EvalSymlinks(bin); err == nil {
		bin = resolved // exe is always the resolved path
	}
	return strings.TrimSuffix(exe, " (deleted)") == bin
}

// Alive reports whether pid exists and is not a zombie. A zombie counts as
// dead: our children are reparented to whatever PID 1 is, and in containers
// that is not always a process that reaps.
func Alive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// Stop sends SIGTERM to pid's process group, waits up to grace, then sends
// SIGKILL and waits again. It returns once the process is gone.
func Stop(pid int, grace time.Duration) error {
	if !Alive(pid) {
		return nil
	}
	signal := func(sig syscall.Signal) {
		// The group first (the component and anything it spawned); fall back
		// to the pid for processes that are not group leaders.
		if err := syscall.Kill(-pid, sig); err != nil {
			_ = syscall.Kill(pid, sig)
		}
	}
	signal(syscall.SIGTERM)
	if waitGone(pid, grace) {
		return nil
	}
	signal(syscall.SIGKILL)
	if waitGone(pid, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("process %d survived SIGKILL for 10s", pid)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !Alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns at most the last n lines of the file at path.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
