// Package guesttest builds a real guest bundle for tests that boot VMs: it
// compiles hack/floorinit (and optionally an agent package) statically and
// runs hack/mkguest, which fetches Debian's cloud kernel on first use and
// caches it.
package guesttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vk-applevm/vk-applevm/guest"
)

// Hint is appended to build failures.
const Hint = "a guest bundle is needed: run `make guest` once (needs apt, dpkg-deb and network access to Debian's archive)"

// Options select what goes into the bundle.
type Options struct {
	// Out is the bundle directory.
	Out string
	// Agent is the package path of the /init binary relative to the
	// module root (e.g. "./cmd/vk-applevm-agent"); "" uses hack/floorinit,
	// which answers "ready" on the agent port.
	Agent string
}

// Build builds a bundle with a floor initrd and returns it.
func Build(ctx context.Context, o Options) (guest.Bundle, error) {
	root, err := moduleRoot()
	if err != nil {
		return guest.Bundle{}, err
	}
	bin := filepath.Join(o.Out, ".bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return guest.Bundle{}, fmt.Errorf("build guest bundle: %w", err)
	}
	floor := filepath.Join(bin, "floorinit")
	if err := goBuild(ctx, root, floor, "./hack/floorinit", true, plainBuildArgs); err != nil {
		return guest.Bundle{}, err
	}
	agent := floor
	if o.Agent != "" {
		agent = filepath.Join(bin, "agent")
		if err := goBuild(ctx, root, agent, o.Agent, true, guest.AgentBuildArgs("")); err != nil {
			return guest.Bundle{}, err
		}
	}
	mkguest := filepath.Join(bin, "mkguest")
	if err := goBuild(ctx, root, mkguest, "./hack/mkguest", false, plainBuildArgs); err != nil {
		return guest.Bundle{}, err
	}
	cmd := exec.CommandContext(ctx, mkguest, "--agent", agent, "--floor-init", floor, "--out", o.Out)
	if out, err := cmd.CombinedOutput(); err != nil {
		return guest.Bundle{}, fmt.Errorf("mkguest: %w\n%s\n%s", err, out, Hint)
	}
	return guest.Find(o.Out)
}

// plainBuildArgs build the helpers that are not the agent.
var plainBuildArgs = []string{"-trimpath", "-ldflags=-s -w"}

func goBuild(ctx context.Context, root, out, pkg string, static bool, flags []string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot finds the directory of this module's go.mod from the working
// directory (tests run in their package directory).
func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			data, rerr := os.ReadFile(mod)
			if rerr == nil && bytes.Contains(data, []byte("module github.com/vk-applevm/vk-applevm\n")) {
				return filepath.Dir(mod), nil
			}
		}
	}
	return "", fmt.Errorf("find the vk-applevm module root from the working directory: %v", err)
}

// goTool prefers the go command of the toolchain running the test.
func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}
