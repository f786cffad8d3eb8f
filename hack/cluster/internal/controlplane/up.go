package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/build"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/netns"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/proc"
)

// Up starts a fresh cluster in c.Dir and returns once it is usable: the
// apiserver is ready, the scheduler and controller-manager hold their leases,
// the default namespace has its service account and root CA ConfigMap, and
// (with c.MetricsServer) the metrics.k8s.io APIService is Available.
// A previous cluster in the same dir or netns is removed first.
func Up(ctx context.Context, c Config, log *slog.Logger) (*Summary, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("cluster up needs root (it creates a network namespace and a veth pair): run it with sudo")
	}
	for _, b := range build.Binaries {
		if b == build.MetricsServer && !c.MetricsServer {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `cluster build` first (or pass --bin)", b, c.BinDir)
		}
	}
	start := time.Now()
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", c.Dir, err)
	}
	if err := cleanStale(c, log); err != nil {
		return nil, err
	}

	log.Info("generating certificates", "dir", filepath.Join(c.Dir, "pki"))
	files, err := pki.Generate(pki.Options{
		Dir:       filepath.Join(c.Dir, "pki"),
		APIServer: c.NetNS.IP,
		ServiceIP: serviceIP,
		NodeName:  c.NodeName,
		NodeIP:    c.NetNS.IP,
		// metrics-server listens on the namespace address too.
		MetricsServerDNSNames: metricsServerDNSNames(),
	})
	if err != nil {
		return nil, err
	}
	p := newPaths(c, files)
	if err := kubeconfigs(p); err != nil {
		return nil, err
	}
	logDir := filepath.Join(c.Dir, "logs")
	for _, d := range []string{logDir, p.etcdData} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}

	log.Info("creating network namespace", "netns", c.NetNS.Name, "hostVeth", c.NetNS.HostVeth(),
		"hostIP", c.NetNS.HostIP, "ip", c.NetNS.IP)
	if err := netns.Setup(c.NetNS); err != nil {
		return nil, err
	}
	s := &Summary{
		Dir: c.Dir, BinDir: c.BinDir, KubernetesVersion: build.KubeVersion,
		NetNS: c.NetNS.Name, NetNSInode: netns.Inode(c.NetNS.Name), HostVeth: c.NetNS.HostVeth(),
		HostIP: c.NetNS.HostIP.String(), IP: c.NetNS.IP.String(), PrefixLen: c.NetNS.PrefixLen,
		APIServer: p.apiServer, AdminKubeconfig: p.admin, ServiceCIDR: ServiceCIDR,
		PKIDir: files.Dir, LogDir: logDir,
		Node: Node{
			Name: c.NodeName, IP: c.NetNS.IP.String(), Kubeconfig: p.node,
			ClientCert: pki.Crt(files.NodeClient), ClientKey: pki.Key(files.NodeClient),
			ServingCert: pki.Crt(files.KubeletServing), ServingKey: pki.Key(files.KubeletServing),
			ClientCA: pki.Crt(files.CA), BootstrapKubeconfig: p.bootstrap,
		},
		Components: map[string]Component{},
	}
	// Saved before anything starts, so `down` can clean up after a failed `up`.
	if err := s.save(); err != nil {
		return nil, err
	}
	fail := func(err error) (*Summary, error) {
		log.Error("cluster up failed; stopping what was started (logs stay)", "logs", logDir)
		// A component stuck in its start-up (the apiserver without etcd)
		// may ignore SIGTERM; do not make the user wait the full grace.
		if derr := down(s, 3*time.Second, log); derr != nil {
			log.Error("cleaning up after failed up", "err", derr)
		}
		return nil, err
	}

	w := &waiter{s: s, log: log}
	startOne := func(comp component) error {
		pid, err := proc.Start(proc.Spec{
			Name: comp.name, Path: filepath.Join(c.BinDir, comp.name), Args: comp.args,
			NetNS: c.NetNS.Name, Dir: c.Dir, LogDir: logDir, WorkDir: c.Dir,
		})
		if err != nil {
			return err
		}
		s.Components[comp.name] = Component{Pid: pid, Running: true, Log: filepath.Join(logDir, comp.name+".log")}
		log.Info("started", "component", comp.name, "pid", pid, "log", s.Components[comp.name].Log)
		return s.save()
	}

	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	a, err := newAPI(p.apiServer, files)
	if err != nil {
		return fail(err)
	}
	for _, comp := range []component{etcd(p), apiserver(p)} {
		if err := startOne(comp); err != nil {
			return fail(err)
		}
	}
	if err := w.until(ctx, "kube-apiserver /readyz", func() bool { return a.exists(ctx, "/readyz") }); err != nil {
		return fail(err)
	}
	log.Info("kube-apiserver is ready", "after", time.Since(start).Round(100*time.Millisecond))
	if err := applyRBAC(ctx, a, files); err != nil {
		return fail(err)
	}
	if err := bootstrapToken(ctx, a, p, files, time.Now()); err != nil {
		return fail(err)
	}
	// Started only now: before the apiserver answers they just log errors.
	comps := []component{controllerManager(p), scheduler(p)}
	if c.MetricsServer {
		if err := prepareMetricsServer(ctx, a, c.NetNS.IP); err != nil {
			return fail(err)
		}
		comps = append(comps, metricsServer(p))
	}
	for _, comp := range comps {
		if err := startOne(comp); err != nil {
			return fail(err)
		}
	}
	if c.MetricsServer {
		ms, err := startMetricsAPI(ctx, w, a, p)
		if err != nil {
			return fail(err)
		}
		s.MetricsServer = ms
		if err := s.save(); err != nil {
			return fail(err)
		}
	}
	for _, cond := range []struct{ what, path string }{
		{"kube-scheduler lease", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"},
		{"kube-controller-manager lease", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"},
		{"default service account", "/api/v1/namespaces/default/serviceaccounts/default"},
		{"kube-root-ca.crt ConfigMap", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"},
	} {
		if err := w.until(ctx, cond.what, func() bool { return a.exists(ctx, cond.path) }); err != nil {
			return fail(err)
		}
	}
	if c.MetricsServer {
		// Checked last: the aggregator's availability check ran meanwhile.
		err := w.untilWhy(ctx, "APIService "+metricsAPIService+" Available", func() (bool, string) {
			return a.apiServiceAvailable(ctx, metricsAPIService)
		})
		if err != nil {
			return fail(err)
		}
		s.MetricsServer.Available = true
		log.Info("metrics.k8s.io is available", "after", time.Since(start).Round(100*time.Millisecond))
	}
	s.Ready = true
	if err := s.save(); err != nil {
		return fail(err)
	}
	log.Info("cluster is ready", "took", time.Since(start).Round(100*time.Millisecond),
		"kubeconfig", p.admin, "apiServer", p.apiServer)
	return s, nil
}

// cleanStale removes what a previous run left: its processes (by pid file,
// and anything else still inside a netns of the same name), the netns, and
// the generated files. User files in the dir are left alone.
func cleanStale(c Config, log *slog.Logger) error {
	if old, err := Load(c.Dir); err == nil {
		log.Info("stopping the previous cluster in this dir", "dir", c.Dir)
		if err := Down(old, log); err != nil {
			return fmt.Errorf("stopping the previous cluster in %s: %w", c.Dir, err)
		}
	}
	if netns.Exists(c.NetNS.Name) {
		log.Info("removing stale network namespace", "netns", c.NetNS.Name)
		if err := stopNetnsProcesses(c.NetNS.Name, func(int) bool { return false }, grace, log); err != nil {
			return err
		}
	}
	for _, n := range []string{"etcd", "pki", "logs"} {
		if err := os.RemoveAll(filepath.Join(c.Dir, n)); err != nil {
			return fmt.Errorf("removing stale %s: %w", n, err)
		}
	}
	for _, g := range []string{"*.kubeconfig", "*.pid", "cluster.json"} {
		m, _ := filepath.Glob(filepath.Join(c.Dir, g))
		for _, f := range m {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("removing stale %s: %w", f, err)
			}
		}
	}
	return nil
}

// waiter polls a condition while watching the started processes: if one
// dies, waiting is pointless, and its log tail is the useful error.
type waiter struct {
	s   *Summary
	log *slog.Logger
}

func (w *waiter) until(ctx context.Context, what string, cond func() bool) error {
	return w.untilWhy(ctx, what, func() (bool, string) { return cond(), "" })
}

// untilWhy is until for a condition that can say why it does not hold yet;
// the last reason goes into the timeout error.
func (w *waiter) untilWhy(ctx context.Context, what string, cond func() (bool, string)) error {
	w.log.Info("waiting for " + what)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var why string
	for {
		for name, comp := range w.s.Components {
			if !proc.Alive(comp.Pid) {
				return fmt.Errorf("%s exited while waiting for %s; last lines of %s:\n%s",
					name, what, comp.Log, proc.Tail(comp.Log, 40))
			}
		}
		var ok bool
		if ok, why = cond(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if why != "" {
				what += " (last: " + why + ")"
			}
			return fmt.Errorf("timed out waiting for %s (see logs in %s): %w", what, w.s.LogDir, ctx.Err())
		case <-t.C:
		}
	}
}
