package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Every VM runs one shim, so what it links it pays for per VM in resident
// memory (hack/bench: "shim memory per VM"): the node's Kubernetes side
// (client-go, k8s.io/api, virtual-kubelet, klog) and its CLI framework stay
// out, and so do grpc-go and protobuf's runtime (with agent/api), which the
// shim needed for one call (vm/shim.AgentShutdown; docs/decisions.md).
// Measured idle without a VM, linux/amd64: 11.1 MiB RSS with grpc-go, 8.2
// with grpc-go built with grpcnotrace (no golang.org/x/net/trace and
// html/template), 5.7 with neither.
var forbiddenShimDeps = []string{
	"k8s.io", "sigs.k8s.io", "github.com/virtual-kubelet", "github.com/spf13/cobra",
	"google.golang.org/grpc", "google.golang.org/protobuf/proto", "google.golang.org/protobuf/internal/impl",
	"github.com/vk-applevm/vk-applevm/agent/api", "golang.org/x/net/trace", "html/template",
}

func TestShimLinksNoNodeSide(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies (put Go 1.26's bin in PATH): %v", err)
	}
	const pkg = "github.com/vk-applevm/vk-applevm/cmd/vk-applevm-shim"
	for _, goos := range []string{"linux", "darwin"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg)
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=arm64", "CGO_ENABLED=1")
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("GOOS=%s go list -deps %s: %v", goos, pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 || deps[len(deps)-1] != pkg {
			t.Fatalf("GOOS=%s go list -deps %s: unexpected output %q", goos, pkg, out)
		}
		var linked []string
		for _, dep := range deps {
			for _, bad := range forbiddenShimDeps {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					linked = append(linked, dep)
				}
			}
		}
		if len(linked) > 0 {
			t.Errorf("GOOS=%s: the shim links %d forbidden packages: %s", goos, len(linked), strings.Join(linked, " "))
		}
	}
}
