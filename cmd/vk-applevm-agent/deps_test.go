package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The guest agent serves with agent/grpcserver and links agent/api's
// messages, not grpc-go's server: grpc-go with net/http and crypto/tls costs
// ~50 ms of package initialisation per boot under TCG (hack/bench).
// grpc/status and grpc/codes (the status model) are light and stay.
var forbiddenDeps = []string{"google.golang.org/grpc", "google.golang.org/grpc/internal/transport", "net/http", "crypto/tls"}

func TestAgentDoesNotLinkGRPCServer(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies (put Go 1.26's bin in PATH): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const pkg = "github.com/vk-applevm/vk-applevm/cmd/vk-applevm-agent"
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg)
	cmd.Env = append(cmd.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != pkg {
		t.Fatalf("go list -deps %s: unexpected output %q", pkg, out)
	}
	var linked []string
	for _, dep := range deps {
		for _, bad := range forbiddenDeps {
			if dep == bad || (bad != "google.golang.org/grpc" && strings.HasPrefix(dep, bad+"/")) {
				linked = append(linked, dep)
			}
		}
	}
	if len(linked) > 0 {
		t.Errorf("the guest agent links %d forbidden packages (grpc-go stubs belong in agent/api/agentgrpc, host side only): %s",
			len(linked), strings.Join(linked, " "))
	}
}
