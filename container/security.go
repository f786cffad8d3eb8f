package container

import (
	"fmt"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/security"
)

// Seccomp settings of Security.Seccomp.
const (
	SeccompUnconfined     = "unconfined"
	SeccompRuntimeDefault = "runtime/default"
	SeccompLocalhost      = "localhost"
)

// Security is what a container's processes may do inside their VM. The
// zero value is the container runtime's default: containerd's default
// capabilities, no_new_privs for processes not running as root, no
// seccomp filter (Kubernetes' default; `vk-applevm run` asks for the
// runtime's default profile, as Docker does).
type Security struct {
	// CapAdd and CapDrop adjust the default capability set as a pod's
	// securityContext.capabilities do ("ALL" in either, names with or
	// without CAP_).
	CapAdd  []string `json:"capAdd,omitempty"`
	CapDrop []string `json:"capDrop,omitempty"`
	// NoNewPrivileges is !allowPrivilegeEscalation; nil: set for
	// processes that do not run as root.
	NoNewPrivileges *bool `json:"noNewPrivileges,omitempty"`
	// ReadOnlyRootfs mounts the root filesystem read-only.
	ReadOnlyRootfs bool `json:"readOnlyRootfs,omitempty"`
	// Seccomp is "", SeccompUnconfined, SeccompRuntimeDefault, or
	// SeccompLocalhost with SeccompProfile (Docker's JSON format).
	Seccomp        string `json:"seccomp,omitempty"`
	SeccompProfile []byte `json:"seccompProfile,omitempty"`
	// Sysctls are namespaced kernel parameters of the kubelet's safe set.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// UnmaskedProc leaves /proc and /sys unmasked (procMount Unmasked).
	UnmaskedProc bool `json:"unmaskedProc,omitempty"`
	// FSGroup owns the container's volumes and is one of its processes'
	// groups (the pod's fsGroup).
	FSGroup *uint32 `json:"fsGroup,omitempty"`
}

// Capabilities is the set the container's processes get.
func (s Security) Capabilities() ([]string, error) {
	return security.Adjust(s.CapAdd, s.CapDrop)
}

// Check reports what the guest would refuse, before a VM is made for it.
func (s Security) Check() error {
	if _, err := s.Capabilities(); err != nil {
		return err
	}
	for k, v := range s.Sysctls {
		if err := security.CheckSysctl(k, v); err != nil {
			return err
		}
	}
	switch s.Seccomp {
	case "", SeccompUnconfined, SeccompRuntimeDefault:
	case SeccompLocalhost:
		if len(s.SeccompProfile) == 0 {
			return fmt.Errorf("seccomp profile: localhost without a profile")
		}
	default:
		return fmt.Errorf("seccomp %q: want %s, %s or %s", s.Seccomp, SeccompUnconfined, SeccompRuntimeDefault, SeccompLocalhost)
	}
	return nil
}

// apiSecurity is s for the agent.
func (s Security) apiSecurity() (*api.Security, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	caps, _ := s.Capabilities()
	out := &api.Security{
		Capabilities:       caps,
		NoNewPrivileges:    s.NoNewPrivileges,
		ReadOnlyRoot:       s.ReadOnlyRootfs,
		Seccomp:            s.Seccomp,
		SeccompProfileJson: s.SeccompProfile,
		UnmaskedProc:       s.UnmaskedProc,
		FsGroup:            s.FSGroup,
	}
	if len(s.Sysctls) > 0 {
		out.Sysctls = make(map[string]string, len(s.Sysctls))
		for k, v := range s.Sysctls {
			out.Sysctls[security.NormalizeSysctl(k)] = v
		}
	}
	return out, nil
}
