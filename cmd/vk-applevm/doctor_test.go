package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/internal/testenv"
)

// doctorLine is the table line of check name.
func doctorLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+"  ") {
			return l
		}
	}
	return ""
}

// Each broken case that can be made here is reported with its fix, and
// doctor exits 1.
func TestDoctorReportsBrokenSetups(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o777)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, "--root", root, "--guest", filepath.Join(t.TempDir(), "no-guest"), "doctor", "--kubeconfig", kubeconfig)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	for _, want := range []struct{ check, status, fix string }{
		{"guest kernel and initrd", "FAIL", "make guest"},
		{"state root", "warn", "chmod 700 " + root},
		{"cluster", "FAIL", "server address"},
		{"cluster RBAC", "skip", ""},
	} {
		if l := doctorLine(out, want.check); !strings.Contains(l, " "+want.status+" ") {
			t.Errorf("%s: line %q, want %s", want.check, l, want.status)
		}
		if want.fix != "" && !strings.Contains(out, want.check+": "+want.status+"\n  fix: ") || !strings.Contains(out, want.fix) {
			t.Errorf("%s: no fix mentioning %q in\n%s", want.check, want.fix, out)
		}
	}
}

// On a machine set up by make (QEMU, the guest bundle), every local check
// passes.
func TestDoctorHealthy(t *testing.T) {
	testenv.Needs(t, "QEMU and the guest bundle (make deps guest)")
	repo, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	guestDir := filepath.Join(strings.TrimSpace(string(repo)), "bin", "guest", runtime.GOARCH)
	if _, err := os.Stat(filepath.Join(guestDir, "bundle.json")); err != nil {
		t.Fatalf("no guest bundle in %s: run make guest", guestDir)
	}
	code, out, stderr := run(t, "--root", filepath.Join(t.TempDir(), "root"), "--guest", guestDir, "doctor")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, stderr)
	}
	for _, c := range []string{"hypervisor", "guest kernel and initrd", "state root", "disk space", "pod network"} {
		if l := doctorLine(out, c); !strings.Contains(l, " ok ") {
			t.Errorf("%s: %q", c, l)
		}
	}
}
