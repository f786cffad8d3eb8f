package controlplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/build"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/proc"
)

// grace is how long a component gets between SIGTERM and SIGKILL. The
// apiserver drains for a few seconds by default; etcd stops at once.
const grace = 15 * time.Second

// Down stops the cluster described by s: first whatever else runs inside its
// namespace (the node, started with `cluster exec`), then the components in
// reverse start order — the apiserver stops cleanly only while etcd is still
// there — and finally removes the namespace and veth. Logs, PKI and
// kubeconfigs stay for inspection; the next `up` replaces them.
func Down(s *Summary, log *slog.Logger) error { return down(s, grace, log) }

func down(s *Summary, grace time.Duration, log *slog.Logger) error {
	var errs []error
	order := slices.Clone(build.Binaries) // etcd, apiserver, cm, scheduler, metrics-server
	slices.Reverse(order)
	pids := map[string]int{}
	for _, name := range order {
		pid, err := proc.ReadPid(s.Dir, name, filepath.Join(s.BinDir, name))
		if err != nil {
			errs = append(errs, err)
		}
		pids[name] = pid
	}
	owned := s.ownsNetNS()
	if !owned && netns.Exists(s.NetNS) {
		log.Warn("the network namespace now belongs to another cluster; leaving it alone", "netns", s.NetNS)
	}
	if owned {
		// Components are stopped below, in order; everything else at once.
		isComponent := func(pid int) bool {
			for _, p := range pids {
				if p == pid {
					return true
				}
			}
			return false
		}
		if err := stopNetnsProcesses(s.NetNS, isComponent, grace, log); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range order {
		if pid := pids[name]; pid != 0 {
			start := time.Now()
			if err := proc.Stop(pid, grace); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s: %w", name, err))
				continue
			}
			log.Info("stopped", "component", name, "pid", pid, "took", time.Since(start).Round(10*time.Millisecond))
		}
		_ = os.Remove(proc.PidPath(s.Dir, name))
	}
	if owned {
		if err := netns.Teardown(s.netnsConfig()); err != nil {
			errs = append(errs, fmt.Errorf("removing netns %s: %w", s.NetNS, err))
		} else {
			log.Info("removed network namespace", "netns", s.NetNS, "hostVeth", s.HostVeth)
		}
	}
	if len(errs) == 0 {
		s.Ready = false
		for n, c := range s.Components {
			c.Running = false
			s.Components[n] = c
		}
		_ = s.save()
	}
	return errors.Join(errs...)
}

// stopNetnsProcesses stops every process inside the namespace except those
// skip selects, all at once (SIGTERM to each, then wait) so a slow one does
// not serialize the rest.
func stopNetnsProcesses(name string, skip func(pid int) bool, grace time.Duration, log *slog.Logger) error {
	pids, err := netns.Pids(name)
	if err != nil {
		return err
	}
	// Never ourselves (`cluster exec -- cluster down` runs inside).
	pids = slices.DeleteFunc(pids, func(p int) bool { return p == os.Getpid() || skip(p) })
	// etcd last: kube-apiserver ignores SIGTERM while it cannot reach etcd.
	isEtcd := func(p int) bool { return comm(p) == "etcd" }
	first := slices.DeleteFunc(slices.Clone(pids), isEtcd)
	last := slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return !isEtcd(p) })
	var errs []error
	for _, wave := range [][]int{first, last} {
		errc := make(chan error, len(wave))
		for _, pid := range wave {
			log.Info("stopping process in netns", "netns", name, "pid", pid, "cmd", comm(pid))
			go func() { errc <- proc.Stop(pid, grace) }()
		}
		for range wave {
			if err := <-errc; err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return string(b[:max(len(b)-1, 0)])
}
