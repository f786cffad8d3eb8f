package leftovers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/network/netns"
)

// RemoveStale removes what runs that are over left behind; it returns the
// pids of those runs.
func RemoveStale() ([]int, error) {
	runs := staleRuns(names(netns.Dir), names(os.TempDir()), os.Getpid(), procComm)
	var errs []error
	for _, pid := range runs {
		if err := Remove(pid); err != nil {
			errs = append(errs, err)
		}
	}
	return runs, errors.Join(errs...)
}

// Remove kills every process in the run of pid's namespaces, deletes them
// and its temporary directory. The run must be over.
func Remove(pid int) error {
	var errs []error
	cli, k8s := Namespaces(pid)
	for _, name := range []string{k8s, cli} {
		if err := removeNamespace(netns.Path(name)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, dir := range tempDirs(pid) {
		if err := removeTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeNamespace SIGKILLs the processes inside the namespace at path,
// waits for them to be gone (a process keeps a namespace, and the VM
// files it has open, alive), and deletes the namespace.
func removeNamespace(path string) error {
	if ok, err := netns.IsNamespace(path); err != nil || !ok {
		if err == nil {
			err = netns.Remove(path) // a leftover plain file
		}
		return err
	}
	pids, err := netns.Pids(path)
	if err != nil {
		return err
	}
	for _, p := range pids {
		if p != os.Getpid() {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	// SIGKILL cannot be ignored; the wait covers a process in
	// uninterruptible sleep (a QEMU flushing to disk).
	for deadline := time.Now().Add(30 * time.Second); ; {
		left, err := netns.Pids(path)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s survive SIGKILL", left, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return netns.Remove(path)
}

// removeTree deletes dir unless something is mounted below it (removing
// would then reach into the mounted filesystem).
func removeTree(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts before removing %s: %w", dir, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+string(filepath.Separator))) {
			return fmt.Errorf("not removing %s: %s is mounted", dir, f[4])
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
