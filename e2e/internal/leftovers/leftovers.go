// Package leftovers removes what an end-to-end run left behind when its
// test binary died before its teardown (go test's -timeout, Ctrl-C, a
// kill): its network namespaces, every process inside them, and its
// temporary directory.
//
// A run names what it creates after its pid: the namespaces vkav-e2e-PID
// (the CLI tests' machine) and vkav-e2e-k8s-PID (the control plane's), the
// directory vkav-e2e-PID-* in the temporary directory. Everything a run
// starts that outlives the test binary by design runs inside one of its
// namespaces: the control-plane components, the node, shims, QEMU, the
// switch. So killing the namespaces' processes and deleting the namespaces
// stops all of it, and the host ends of their veth pairs go with them.
package leftovers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prefixes of the names a run gives its namespaces and temporary directory.
const (
	cliPrefix = "vkav-e2e-"
	k8sPrefix = "vkav-e2e-k8s-"
)

// TestBinary is the command name of the e2e test binary (go test builds
// the package as e2e.test); a live process of another name holding a
// run's pid is a reused pid, not the run.
const TestBinary = "e2e.test"

// Namespaces are the names of the network namespaces of the run of pid.
func Namespaces(pid int) (cli, k8s string) {
	return cliPrefix + strconv.Itoa(pid), k8sPrefix + strconv.Itoa(pid)
}

// TempPattern is the os.MkdirTemp pattern of the run of pid's directory.
func TempPattern(pid int) string { return cliPrefix + strconv.Itoa(pid) + "-" }

// namespaceOwner returns the pid a namespace name belongs to.
func namespaceOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, k8sPrefix)
	if !ok {
		if rest, ok = strings.CutPrefix(name, cliPrefix); !ok {
			return 0, false
		}
	}
	return parsePid(rest)
}

// tempOwner returns the pid a temporary directory name belongs to.
func tempOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, cliPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	return parsePid(digits)
}

func parsePid(s string) (int, bool) {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != s {
		return 0, false
	}
	return pid, true
}

// stale reports whether the run of pid is over, so that what it left may
// go: no process pid runs the test binary, or pid is self (this run has
// not created anything yet when it sweeps, so what bears its pid is from
// an earlier run whose pid it reuses). comm looks up a process's command
// name, false when there is no such process.
func stale(pid, self int, comm func(pid int) (string, bool)) bool {
	if pid == self {
		return true
	}
	name, ok := comm(pid)
	return !ok || name != TestBinary
}

// procComm reads /proc/PID/comm.
func procComm(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// staleRuns lists the pids of the runs that left namespaces in nsDir or
// directories in tmpDir and are over.
func staleRuns(nsNames, tmpNames []string, self int, comm func(int) (string, bool)) []int {
	seen := map[int]bool{}
	var out []int
	add := func(pid int, ok bool) {
		if ok && !seen[pid] {
			seen[pid] = true
			if stale(pid, self, comm) {
				out = append(out, pid)
			}
		}
	}
	for _, n := range nsNames {
		add(namespaceOwner(n))
	}
	for _, n := range tmpNames {
		add(tempOwner(n))
	}
	return out
}

func names(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// tempDirs are the temporary directories of the run of pid.
func tempDirs(pid int) []string {
	var out []string
	for _, n := range names(os.TempDir()) {
		if p, ok := tempOwner(n); ok && p == pid {
			out = append(out, filepath.Join(os.TempDir(), n))
		}
	}
	return out
}
