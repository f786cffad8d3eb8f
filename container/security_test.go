package container

import (
	"strings"
	"testing"
)

func TestSecurityToTheAgent(t *testing.T) {
	yes := true
	g := uint32(7)
	req, err := createContainerRequest("c1", VMConfig{Security: Security{
		CapDrop: []string{"ALL"}, CapAdd: []string{"net_bind_service"}, NoNewPrivileges: &yes, ReadOnlyRootfs: true,
		Seccomp: SeccompRuntimeDefault, Sysctls: map[string]string{"net/ipv4/tcp_syncookies": "1"}, UnmaskedProc: true, FSGroup: &g,
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := req.GetSecurity()
	if strings.Join(s.GetCapabilities(), ",") != "CAP_NET_BIND_SERVICE" || !s.GetNoNewPrivileges() || !s.GetReadOnlyRoot() ||
		s.GetSeccomp() != "runtime/default" || s.GetSysctls()["net.ipv4.tcp_syncookies"] != "1" || !s.GetUnmaskedProc() || s.GetFsGroup() != 7 {
		t.Fatalf("%v", s)
	}
	// The zero value: containerd's default set, no_new_privs left to the
	// agent (set for non-root), no seccomp.
	req, err = createContainerRequest("c2", VMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s := req.GetSecurity(); len(s.GetCapabilities()) != 14 || s.NoNewPrivileges != nil || s.GetSeccomp() != "" {
		t.Fatalf("defaults: %v", s)
	}
	for _, bad := range []Security{
		{CapAdd: []string{"CAP_NOPE"}},
		{Sysctls: map[string]string{"kernel.msgmax": "1"}},
		{Seccomp: SeccompLocalhost},
		{Seccomp: "strict"},
	} {
		if _, err := createContainerRequest("c3", VMConfig{Security: bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
