package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every VM runs one shim, so what it links it pays for per VM in resident
// memory (hack/bench: "shim memory per VM"): the node's Kubernetes side
// (client-go, k8s.io/api, virtual-kubelet, klog), its CLI framework, and
// grpc-go's golang.org/x/net/trace (html/template; left out by the
// grpcnotrace tag the Makefile builds with) stay out.
var forbiddenShimDeps = []string{"k8s.io", "sigs.k8s.io", "github.com/virtual-kubelet", "github.com/spf13/cobra", "golang.org/x/net/trace", "html/template"}

func TestShimLinksNoNodeSide(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list dependencies (put Go 1.26's bin in PATH): %v", err)
	}
	const pkg = "github.com/vk-applevm/vk-applevm/cmd/vk-applevm-shim"
	for _, goos := range []string{"linux", "darwin"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-tags", BuildTags, "-f", "{{.ImportPath}}", pkg)
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

func TestMakefileBuildsShimWithBuildTags(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	want := "SHIM_TAGS := " + BuildTags
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "SHIM_TAGS") {
			if strings.Join(strings.Fields(line), " ") != want {
				t.Fatalf("Makefile: %q, want %q (cmd/vk-applevm-shim/build.go)", line, want)
			}
			return
		}
	}
	t.Fatalf("Makefile has no SHIM_TAGS line; want %q", want)
}
