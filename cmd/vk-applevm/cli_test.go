package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/rootlock"
)

// run runs the CLI in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpExitsZeroEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {}, {"run", "--help"}, {"run", "-h"}, {"help", "run"}, {"images", "pull", "--help"},
		{"node", "--help"}, {"exec", "--help"}, {"ps", "--help"}, {"kernel", "fetch", "--help"}, {"completion", "--help"},
	} {
		code, out, errOut := run(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("vk-applevm %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// TestUsageErrorsExit125OneLine: what docker run does for a bad command
// line, in one line that says what was wrong.
func TestUsageErrorsExit125OneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--bogus", "busybox"}, "unknown flag: --bogus"},
		{[]string{"run", "-Q", "busybox"}, "unknown shorthand flag: 'Q'"},
		{[]string{"run"}, "want an IMAGE"},
		{[]string{"run", "--memory", "lots", "busybox"}, `--memory "lots"`},
		{[]string{"run", "--pull", "sometimes", "busybox"}, `--pull "sometimes"`},
		{[]string{"run", "-v", "relative-only", "busybox"}, `-v "relative-only": the container path must be absolute (alone it names an anonymous volume`},
		{[]string{"run", "-v", "/", "busybox"}, `-v "/": the container path cannot be /`},
		{[]string{"run", "-v", "/data", "-v", "/data/", "busybox"}, `-v "/data/": /data is mounted twice`},
		{[]string{"run", "-v", ":/data", "busybox"}, "want HOST:CONTAINER[:ro] or CONTAINER"},
		{[]string{"run", "-d", "--rm", "busybox"}, "-d and --rm together"},
		{[]string{"run", "--cap-add", "SYS_WIZARD", "busybox"}, `unknown capability "SYS_WIZARD"`},
		{[]string{"run", "--sysctl", "vm.swappiness=1", "busybox"}, `forbidden sysctl: "vm.swappiness" not allowlisted`},
		{[]string{"run", "--security-opt", "apparmor=x", "busybox"}, `--security-opt "apparmor=x"`},
		{[]string{"no-such-command"}, `unknown command "no-such-command"`},
		{[]string{"images", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"logs"}, "want one CONTAINER"},
		{[]string{"ps", "--format", "yaml"}, `--format "yaml"`},
		{[]string{"--log-level", "loud", "ps"}, `--log-level "loud"`},
		{[]string{"node", "--config", "/nonexistent/node.yaml"}, "read config"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != 125 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("vk-applevm %s: exit %d, stderr %q; want 125 and one line with %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := run(t, args...)
		if code != 0 || !strings.HasPrefix(out, "vk-applevm "+version) {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, _ := run(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "vk-applevm") || len(out) < 500 {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
}

// parseRun parses a run command line without running it.
func parseRun(t *testing.T, args ...string) (*runFlags, []string) {
	t.Helper()
	g := &globals{}
	var captured runFlags
	var rest []string
	cmd := newRunCommand(g)
	cmd.RunE = nil
	cmd.Run = func(c *cobra.Command, a []string) { rest = a }
	root := newRootCommand(g)
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(cmd)
	root.SetArgs(append([]string{"run"}, args...))
	root.SetOut(&bytes.Buffer{})
	if err := root.Execute(); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	fl := cmd.Flags()
	captured.stdin, _ = fl.GetBool("interactive")
	captured.tty, _ = fl.GetBool("tty")
	captured.detach, _ = fl.GetBool("detach")
	captured.rm, _ = fl.GetBool("rm")
	captured.env, _ = fl.GetStringArray("env")
	captured.volumes, _ = fl.GetStringArray("volume")
	captured.name, _ = fl.GetString("name")
	captured.entrypoint, _ = fl.GetString("entrypoint")
	captured.capAdd, _ = fl.GetStringArray("cap-add")
	captured.capDrop, _ = fl.GetStringArray("cap-drop")
	captured.readOnly, _ = fl.GetBool("read-only")
	captured.secOpts, _ = fl.GetStringArray("security-opt")
	captured.sysctls, _ = fl.GetStringArray("sysctl")
	return &captured, rest
}

// TestRunFlagsAsDocker: combined short flags, flags ending at the image,
// the container's own flags left alone.
func TestRunFlagsAsDocker(t *testing.T) {
	f, rest := parseRun(t, "-it", "--rm", "-e", "A=1", "--env", "B=2", "-v", "/tmp:/data:ro", "--name", "x",
		"--entrypoint", "/bin/sh", "busybox", "-c", "ls -l")
	if !f.stdin || !f.tty || !f.rm || f.detach || f.name != "x" || f.entrypoint != "/bin/sh" ||
		strings.Join(f.env, ",") != "A=1,B=2" || strings.Join(f.volumes, ",") != "/tmp:/data:ro" {
		t.Fatalf("flags %+v", f)
	}
	if strings.Join(rest, "|") != "busybox|-c|ls -l" {
		t.Fatalf("arguments %q", rest)
	}
	f, _ = parseRun(t, "-dit", "busybox")
	if !f.stdin || !f.tty || !f.detach {
		t.Fatalf("-dit: %+v", f)
	}
}

func TestSecuritySettingsAsDocker(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := parseRun(t, "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--read-only", "--security-opt", "no-new-privileges",
		"--security-opt", "seccomp="+profile, "--sysctl", "net.ipv4.tcp_syncookies=0", "busybox")
	s, err := securitySettings(f.capAdd, f.capDrop, f.readOnly, f.secOpts, f.sysctls, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := s.Capabilities()
	if strings.Join(caps, ",") != "CAP_NET_ADMIN" || !s.ReadOnlyRootfs || s.NoNewPrivileges == nil || !*s.NoNewPrivileges ||
		s.Seccomp != container.SeccompLocalhost || string(s.SeccompProfile) != `{"defaultAction":"SCMP_ACT_ALLOW"}` ||
		s.Sysctls["net.ipv4.tcp_syncookies"] != "0" {
		t.Fatalf("security %+v caps %v", s, caps)
	}
	// Docker's defaults: the runtime's seccomp profile, no_new_privs unset.
	s, err = securitySettings(nil, nil, false, nil, nil, os.ReadFile)
	if err != nil || s.Seccomp != container.SeccompRuntimeDefault || s.NoNewPrivileges != nil {
		t.Fatalf("defaults %+v %v", s, err)
	}
	for opt, want := range map[string]string{"seccomp=unconfined": container.SeccompUnconfined, "no-new-privileges:false": ""} {
		s, err = securitySettings(nil, nil, false, []string{opt}, nil, os.ReadFile)
		if err != nil {
			t.Fatal(err)
		}
		if want != "" && s.Seccomp != want || want == "" && (s.NoNewPrivileges == nil || *s.NoNewPrivileges) {
			t.Errorf("%s: %+v", opt, s)
		}
	}
}

func TestEnvSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("# comment\n\nFROM_FILE=1\n  SPACED=a b\nHOST_ONLY\nMISSING\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) {
		if k == "HOST_ONLY" || k == "FLAG_HOST" {
			return "from-host", true
		}
		return "", false
	}
	got, err := envSettings([]string{"A=x=y", "FLAG_HOST", "EMPTY="}, []string{file}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := "FROM_FILE=1|SPACED=a b|HOST_ONLY=from-host|A=x=y|FLAG_HOST=from-host|EMPTY="
	if strings.Join(got, "|") != want {
		t.Fatalf("env %q, want %q", strings.Join(got, "|"), want)
	}
	if _, err := envSettings([]string{"=v"}, nil, lookup); err == nil {
		t.Fatal("an empty key was accepted")
	}
	if _, err := envSettings(nil, []string{filepath.Join(t.TempDir(), "none")}, lookup); err == nil {
		t.Fatal("a missing env file was accepted")
	}
}

func TestParseVolumes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	got, err := parseVolumes([]string{dir + ":/data", dir + ":/ro:ro", dir + ":/rw/:rw", "/anon", "/cache/", dir})
	if err != nil {
		t.Fatal(err)
	}
	// A container path alone is an anonymous volume: a disk of the
	// default size, its image placed by the runtime (no host path here).
	// An absolute host path alone is one too, as with docker.
	anon := func(dst string) container.Mount {
		return container.Mount{Kind: container.MountDisk, Destination: dst, SizeBytes: container.DefaultVolumeDiskBytes}
	}
	want := []container.Mount{
		{Kind: container.MountShare, HostPath: dir, Destination: "/data"},
		{Kind: container.MountShare, HostPath: dir, Destination: "/ro", ReadOnly: true},
		{Kind: container.MountShare, HostPath: dir, Destination: "/rw"},
		anon("/anon"), anon("/cache"), anon(dir),
	}
	if len(got) != len(want) {
		t.Fatalf("mounts %+v", got)
	}
	for i := range want {
		if g, w := got[i], want[i]; g.Kind != w.Kind || g.HostPath != w.HostPath || g.Destination != w.Destination || g.ReadOnly != w.ReadOnly || g.SizeBytes != w.SizeBytes {
			t.Fatalf("mount %d: %+v, want %+v", i, g, w)
		}
	}
	for _, bad := range [][]string{
		{"data"}, {"./data"}, {"/"}, {"//"}, {""},
		{dir + ":data"}, {dir + ":/d:rx"}, {filepath.Join(dir, "missing") + ":/d"}, {file + ":/f"}, {":/d"}, {dir + ":/"},
		{"/d", dir + ":/d"}, {"/d", "/d"},
	} {
		if _, err := parseVolumes(bad); err == nil {
			t.Errorf("-v %q accepted", bad)
		}
	}
}

// A second node on a state root in use fails at once and says which
// process holds it.
func TestSecondNodeOnOneRootFailsFast(t *testing.T) {
	root := t.TempDir()
	l, err := rootlock.Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	code, _, stderr := run(t, "--root", root, "node", "--kubeconfig", filepath.Join(root, "kubeconfig"))
	if code == 0 || !strings.Contains(stderr, "in use by another node") || !strings.Contains(stderr, "pid ") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state root mode: %v %v", fi.Mode(), err)
	}
}

// With a node holding the state root, `cleanup` (which would remove the
// node's VMs and network) refuses with who holds it, before touching
// anything.
func TestCleanupRefusedBesideANode(t *testing.T) {
	root := t.TempDir()
	l, err := rootlock.Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	vmDir := filepath.Join(root, "vms", "0123456789ab")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "--root", root, "--guest", t.TempDir(), "cleanup")
	if code == 0 || !strings.Contains(stderr, "in use by another node") || !strings.Contains(stderr, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(vmDir); err != nil {
		t.Fatalf("the refused cleanup changed the root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "network")); !os.IsNotExist(err) {
		t.Fatalf("the refused cleanup opened the network: %v", err)
	}
}
