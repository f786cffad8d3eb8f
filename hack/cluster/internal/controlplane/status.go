package controlplane

import (
	"context"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/proc"
)

// Status refreshes s with what is true now: which components still run and
// whether the apiserver answers /readyz.
func Status(ctx context.Context, s *Summary) *Summary {
	all := true
	for name, c := range s.Components {
		pid, err := proc.ReadPid(s.Dir, name, filepath.Join(s.BinDir, name))
		c.Running = err == nil && pid != 0
		all = all && c.Running
		s.Components[name] = c
	}
	s.Ready = false
	if all && len(s.Components) > 0 && s.ownsNetNS() {
		files := &pki.Files{CA: filepath.Join(s.PKIDir, "ca"), Admin: filepath.Join(s.PKIDir, "admin")}
		if a, err := newAPI(s.APIServer, files); err == nil {
			s.Ready = a.exists(ctx, "/readyz")
		}
	}
	return s
}
