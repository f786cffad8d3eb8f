package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func checkAgent(t *testing.T, data []byte, bin, config, logDir string) {
	t.Helper()
	v, err := ParsePlist(data)
	if err != nil {
		t.Fatalf("not a property list: %v\n%s", err, data)
	}
	p, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("top level is %T, want a dict", v)
	}
	if p["Label"] != "io.vk-applevm.node" || p["KeepAlive"] != true || p["RunAtLoad"] != true || p["AbandonProcessGroup"] != true {
		t.Errorf("Label/KeepAlive/RunAtLoad/AbandonProcessGroup: %v %v %v %v", p["Label"], p["KeepAlive"], p["RunAtLoad"], p["AbandonProcessGroup"])
	}
	args, _ := p["ProgramArguments"].([]any)
	if want := []any{bin, "node", "--config", config}; fmt.Sprint(args) != fmt.Sprint(want) {
		t.Errorf("ProgramArguments %q, want %q", args, want)
	}
	for _, k := range []string{"StandardOutPath", "StandardErrorPath"} {
		if p[k] != logDir+"/node.log" {
			t.Errorf("%s = %v, want %s/node.log", k, p[k], logDir)
		}
	}
}

// TestLaunchdAgent checks the committed template and what join.sh makes of
// it for paths with spaces and XML's special characters (a Mac's state
// lives under "Application Support").
func TestLaunchdAgent(t *testing.T) {
	tmpl, err := os.ReadFile("launchd/io.vk-applevm.node.plist")
	if err != nil {
		t.Fatal(err)
	}
	checkAgent(t, tmpl, "@BIN@", "@CONFIG@", "@LOGDIR@")

	home := "/Users/Jane Doe & Co"
	dir := home + "/Library/Application Support/vk-applevm"
	bin := home + "/src/vk-applevm/bin/vk-applevm"
	logDir := home + "/Library/Logs/vk-applevm"
	cmd := exec.Command("sh", "kina/join.sh", "--print-plist", "--bin", bin, "--dir", dir, "--root", dir, "--log-dir", logDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	rendered, err := cmd.Output()
	if err != nil {
		t.Fatalf("join.sh --print-plist: %v\n%s", err, stderr.String())
	}
	checkAgent(t, rendered, bin, dir+"/node.yaml", logDir)
	if regexp.MustCompile(`@[A-Z]+@`).Match(rendered) {
		t.Errorf("placeholders left:\n%s", rendered)
	}
	if runtime.GOOS == "darwin" {
		// Every Mac has plutil; it checks the file as launchd reads it.
		for name, data := range map[string][]byte{"template": tmpl, "rendered": rendered} {
			f := filepath.Join(t.TempDir(), name+".plist")
			os.WriteFile(f, data, 0o644)
			if out, err := exec.Command("plutil", "-lint", f).CombinedOutput(); err != nil {
				t.Errorf("plutil -lint %s: %v\n%s", name, err, out)
			}
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/vk-applevm-node.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("not key=value: %q", line)
			}
			settings[section+"."+k] = v
		}
	}
	for k, want := range map[string]string{
		"Service.ExecStart": "/usr/local/bin/vk-applevm node --config /etc/vk-applevm/node.yaml",
		"Service.Restart":   "always",
		// The VMs' helper processes must survive the node's restarts.
		"Service.KillMode": "process",
		"Install.WantedBy": "multi-user.target",
		"Unit.After":       "network-online.target",
	} {
		if settings[k] != want {
			t.Errorf("%s = %q, want %q", k, settings[k], want)
		}
	}
}

func TestRBACManifests(t *testing.T) {
	want := map[string]map[string]string{
		"rbac/bootstrap.yaml": {
			"kubeadm:kubelet-bootstrap":                     "system:node-bootstrapper",
			"kubeadm:node-autoapprove-bootstrap":            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
			"kubeadm:node-autoapprove-certificate-rotation": "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
		},
		"rbac/node-without-node-authorizer.yaml": {"vk-applevm:system-node": "system:node"},
		"rbac/node-proxier.yaml":                 {"vk-applevm:node-proxier": "system:node-proxier"},
	}
	for file, bindings := range want {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var crb rbacv1.ClusterRoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &crb); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if crb.Kind != "ClusterRoleBinding" || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "Group" {
				t.Errorf("%s: %s is not a binding to one group", file, crb.Name)
			}
			got[crb.Name] = crb.RoleRef.Name
		}
		if fmt.Sprint(got) != fmt.Sprint(bindings) {
			t.Errorf("%s: bindings %v, want %v", file, got, bindings)
		}
	}
}

// TestEntitlements: the file every vz binary is signed with grants the
// virtualization entitlement and nothing else (ad-hoc signatures cannot
// carry restricted ones such as com.apple.vm.networking: macOS would kill
// the binary at launch).
func TestEntitlements(t *testing.T) {
	b, err := os.ReadFile("vz.entitlements")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParsePlist(b)
	if err != nil {
		t.Fatalf("vz.entitlements: %v", err)
	}
	if fmt.Sprint(v) != "map[com.apple.security.virtualization:true]" {
		t.Errorf("vz.entitlements holds %v, want only com.apple.security.virtualization = true", v)
	}
}

// TestSignedBinaries: darwin.mk signs exactly the binaries that link
// Code-Hex/vz when built for macOS — an unsigned one fails at its first VM,
// and the list must follow the commands as they change.
func TestSignedBinaries(t *testing.T) {
	mk, err := os.ReadFile("darwin.mk")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VZ_BINARIES \?= (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("darwin.mk sets no VZ_BINARIES")
	}
	signed := strings.Fields(string(m[1]))
	cmd := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}} {{join .Deps " "}}{{end}}`, "./cmd/...")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/... for darwin: %v\n%s", err, stderr.String())
	}
	var linking []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && slices.Contains(fields[1:], "github.com/Code-Hex/vz/v3") {
			linking = append(linking, "bin/"+path.Base(fields[0]))
		}
	}
	slices.Sort(signed)
	slices.Sort(linking)
	t.Logf("linking vz for darwin: %v", linking)
	if len(linking) == 0 || !slices.Equal(signed, linking) {
		t.Errorf("darwin.mk signs %v; the binaries linking vz for darwin are %v", signed, linking)
	}
}
