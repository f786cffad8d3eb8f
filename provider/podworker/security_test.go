package podworker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/env"
	corev1 "k8s.io/api/core/v1"
)

func TestSecurityFor(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "seccomp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "seccomp", "p.json"), []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, tr := false, true
	g := int64(2000)
	local := "p.json"
	pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{
		FSGroup: &g, Sysctls: []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "0"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}}}
	unmasked := corev1.UnmaskedProcMount
	c := &corev1.Container{SecurityContext: &corev1.SecurityContext{
		Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
		AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &tr, ProcMount: &unmasked,
	}}
	s, err := securityFor(pod, c, root)
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := s.Capabilities()
	if strings.Join(caps, ",") != "CAP_NET_ADMIN" || s.NoNewPrivileges == nil || !*s.NoNewPrivileges || !s.ReadOnlyRootfs ||
		!s.UnmaskedProc || s.FSGroup == nil || *s.FSGroup != 2000 || s.Sysctls["net.ipv4.tcp_syncookies"] != "0" ||
		s.Seccomp != container.SeccompRuntimeDefault {
		t.Fatalf("%+v", s)
	}
	// The container's seccomp profile wins over the pod's.
	c.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &local}
	if s, err = securityFor(pod, c, root); err != nil || s.Seccomp != container.SeccompLocalhost || len(s.SeccompProfile) == 0 {
		t.Fatalf("localhost: %+v %v", s, err)
	}
	// Nothing set: the runtime's defaults, no seccomp (Kubernetes' default).
	if s, err = securityFor(&corev1.Pod{}, &corev1.Container{}, root); err != nil || s.Seccomp != "" || s.NoNewPrivileges != nil {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	for name, edit := range map[string]func(*corev1.Pod, *corev1.Container){
		"unsafe sysctl": func(p *corev1.Pod, _ *corev1.Container) {
			p.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "kernel.msgmax", Value: "1"}}
		},
		"missing profile": func(_ *corev1.Pod, c *corev1.Container) {
			n := "nope.json"
			c.SecurityContext.SeccompProfile.LocalhostProfile = &n
		},
		"escaping profile": func(_ *corev1.Pod, c *corev1.Container) {
			n := "../x"
			c.SecurityContext.SeccompProfile.LocalhostProfile = &n
		},
		"unknown capability": func(_ *corev1.Pod, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"WIZARD"}
		},
	} {
		p, cc := pod.DeepCopy(), c.DeepCopy()
		edit(p, cc)
		if _, err := securityFor(p, cc, root); err == nil || !env.IsConfigError(err) {
			t.Errorf("%s: %v, want a config error", name, err)
		}
	}
}
