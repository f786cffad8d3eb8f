package controlplane

import (
	"context"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/proc"
)

// Status refreshes s with what is true now: which components still run,
// whether the apiserver answers /readyz and, when metrics-server was started,
// whether its APIService is Available. Ready needs all of them.
func Status(ctx context.Context, s *Summary) *Summary {
	all := true
	for name, c := range s.Components {
		pid, err := proc.ReadPid(s.Dir, name, filepath.Join(s.BinDir, name))
		c.Running = err == nil && pid != 0
		all = all && c.Running
		s.Components[name] = c
	}
	s.Ready = false
	if s.MetricsServer != nil {
		s.MetricsServer.Available = false
	}
	if !all || len(s.Components) == 0 || !s.ownsNetNS() {
		return s
	}
	files := &pki.Files{CA: filepath.Join(s.PKIDir, "ca"), Admin: filepath.Join(s.PKIDir, "admin")}
	a, err := newAPI(s.APIServer, files)
	if err != nil {
		return s
	}
	s.Ready = a.exists(ctx, "/readyz")
	if s.Ready && s.MetricsServer != nil {
		s.MetricsServer.Available, _ = a.apiServiceAvailable(ctx, s.MetricsServer.APIService)
		s.Ready = s.MetricsServer.Available
	}
	return s
}
