package podworker

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/env"
	corev1 "k8s.io/api/core/v1"
)

// securityFor maps a container's and its pod's securityContext onto the
// isolation its VM gives it, as the kubelet hands it to the runtime: the
// container's settings win over the pod's; a Localhost seccomp profile is
// read from <root>/seccomp/ (the kubelet's <root-dir>/seccomp). What the
// node cannot honour is a config error, so no VM is made for it.
func securityFor(pod *corev1.Pod, c *corev1.Container, root string) (container.Security, error) {
	var s container.Security
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if caps := sc.Capabilities; caps != nil {
		for _, x := range caps.Add {
			s.CapAdd = append(s.CapAdd, string(x))
		}
		for _, x := range caps.Drop {
			s.CapDrop = append(s.CapDrop, string(x))
		}
	}
	if ape := sc.AllowPrivilegeEscalation; ape != nil {
		nnp := !*ape
		s.NoNewPrivileges = &nnp
	}
	s.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	s.UnmaskedProc = sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount
	if g := psc.FSGroup; g != nil {
		v := uint32(*g)
		s.FSGroup = &v
	}
	for _, x := range psc.Sysctls {
		if s.Sysctls == nil {
			s.Sysctls = map[string]string{}
		}
		s.Sysctls[x.Name] = x.Value
	}
	profile := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		profile = sc.SeccompProfile
	}
	if profile != nil {
		switch profile.Type {
		case corev1.SeccompProfileTypeRuntimeDefault:
			s.Seccomp = container.SeccompRuntimeDefault
		case corev1.SeccompProfileTypeUnconfined:
			s.Seccomp = container.SeccompUnconfined
		case corev1.SeccompProfileTypeLocalhost:
			name := ""
			if profile.LocalhostProfile != nil {
				name = *profile.LocalhostProfile
			}
			if name == "" || filepath.IsAbs(name) || strings.Contains(filepath.Clean(name), "..") {
				return s, env.ConfigErrorf("seccomp profile %q: want a path relative to the node's seccomp directory", name)
			}
			b, err := os.ReadFile(filepath.Join(root, "seccomp", filepath.Clean(name)))
			if err != nil {
				return s, env.ConfigErrorf("seccomp profile: %v", err)
			}
			s.Seccomp, s.SeccompProfile = container.SeccompLocalhost, b
		}
	}
	if err := s.Check(); err != nil {
		return s, env.ConfigErrorf("securityContext: %v", err)
	}
	return s, nil
}
