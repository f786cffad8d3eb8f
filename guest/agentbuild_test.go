package guest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// makeVars reads the NAME := value lines of a make fragment.
func makeVars(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":="); ok && !strings.ContainsAny(name, "\t#") {
			vars[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
	}
	return vars
}

func TestMakeFragmentsBuildTheAgentLikeAgentBuildArgs(t *testing.T) {
	gcflags := "-gcflags=" + AgentGcflags + " -gcflags=" + AgentRuntimeGcflags
	g := makeVars(t, "guest.mk")
	if g["GUEST_AGENT_TAGS"] != AgentBuildTags || g["GUEST_AGENT_GCFLAGS"] != gcflags || g["GUEST_AGENT_LDFLAGS"] != AgentLDFlags {
		t.Errorf("guest.mk builds the agent with tags %q, %q and ldflags %q; guest/agentbuild.go says %q, %q and %q",
			g["GUEST_AGENT_TAGS"], g["GUEST_AGENT_GCFLAGS"], g["GUEST_AGENT_LDFLAGS"], AgentBuildTags, gcflags, AgentLDFlags)
	}
	a := makeVars(t, filepath.Join("..", "agent", "agent.mk"))
	if a["AGENT_TAGS"] != AgentBuildTags || a["AGENT_GCFLAGS"] != gcflags || !strings.HasPrefix(a["AGENT_LDFLAGS"], AgentLDFlags+" ") {
		t.Errorf("agent.mk builds the agent with tags %q, %q and ldflags %q; guest/agentbuild.go says %q, %q and %q",
			a["AGENT_TAGS"], a["AGENT_GCFLAGS"], a["AGENT_LDFLAGS"], AgentBuildTags, gcflags, AgentLDFlags)
	}
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestAgentBuildFlagsTakeEffect builds the agent as the bundle does and
// checks what the flags promise: no x/net/trace (nor the html/template it
// pulls in), and a heap the runtime keeps off transparent huge pages
// (MADV_NOHUGEPAGE shows as "nh" in smaps VmFlags), which proves the
// GODEBUG default reached the runtime.
func TestAgentBuildFlagsTakeEffect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	list := exec.CommandContext(ctx, goTool(), "list", "-deps", "-tags", AgentBuildTags, "./cmd/vk-applevm-agent")
	list.Dir = root
	deps, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		if pkg == "golang.org/x/net/trace" || pkg == "html/template" || pkg == "text/template" {
			t.Errorf("the agent links %s", pkg)
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "agent")
	build := exec.CommandContext(ctx, goTool(), append(append([]string{"build"}, AgentBuildArgs("")...), "-o", bin, "./cmd/vk-applevm-agent")...)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "a.sock")
	agent := exec.CommandContext(ctx, bin, "--listen", "unix:"+sock, "--state-dir", filepath.Join(dir, "state"))
	agent.Env = []string{} // no GODEBUG from the test's environment
	var stderr strings.Builder
	agent.Stderr = &stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		agent.Process.Kill()
		agent.Wait()
	}()
	for !fileExists(sock) {
		if ctx.Err() != nil {
			t.Fatalf("the agent never listened on %s: %s", sock, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	smaps, err := os.ReadFile("/proc/" + strconv.Itoa(agent.Process.Pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	noHuge := 0
	for _, line := range strings.Split(string(smaps), "\n") {
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && strings.Contains(" "+flags+" ", " nh ") {
			noHuge++
		}
	}
	if noHuge == 0 {
		t.Fatalf("no mapping of the agent is marked nohugepage: the GODEBUG default %q did not reach the runtime (was runtime.godebugDefault renamed?)", AgentGodebug)
	}
}
