// Package build compiles the control-plane binaries from upstream Go modules.
//
// The tool carries (embedded) the tiny main packages in hack/cluster/cmd and
// the go.mod/go.sum that pin k8s.io/kubernetes and replace every staging module
// with its release. It writes them to a cache directory and runs `go build`
// there, so it works from any working directory and the result depends only
// on the embedded source, the Go toolchain and the flags. A stamp file records
// that combination: when it matches, nothing runs at all.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Pinned versions (must match hack/cluster/go.mod).
const (
	KubeVersion          = "v1.37.2"
	EtcdVersion          = "v3.7.0"
	MetricsServerVersion = "v0.9.0"
)

// Binaries are the component binaries, each built from ./cmd/<name>, in
// start order (`down` stops them in reverse).
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "metrics-server"}

// MetricsServer is the optional component (`cluster up --metrics-server`).
const MetricsServer = "metrics-server"

// kubeLdflags give the Kubernetes components a real version: without them they
// report v0.0.0-master, which kubectl warns about and which confuses version
// skew checks. Same variables as upstream's hack/lib/version.sh sets.
var kubeLdflags = strings.Join([]string{
	"-X k8s.io/component-base/version.gitVersion=" + KubeVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=37",
	"-X k8s.io/component-base/version.gitTreeState=clean",
}, " ")

// metricsServerLdflags: metrics-server reports client-go's version
// (`--version`, its User-Agent), set like upstream's Makefile does
// (VERSION_LDFLAGS). component-base's version must stay unset there: it
// feeds the binary's effective (emulation) version.
var metricsServerLdflags = "-X k8s.io/client-go/pkg/version.gitVersion=" + MetricsServerVersion

// step is one `go build` invocation; two are needed because one -ldflags
// applies to every binary of an invocation.
type step struct {
	ldflags string
	pkgs    []string
}

var steps = []step{
	{kubeLdflags, []string{"./cmd/etcd", "./cmd/kube-apiserver", "./cmd/kube-controller-manager", "./cmd/kube-scheduler"}},
	{metricsServerLdflags, []string{"./cmd/metrics-server"}},
}

// buildArgs are deliberately plain (no -trimpath, no CGO_ENABLED override):
// compiled packages then share Go's build cache with `go vet ./...` and
// `go build ./cmd/...` in hack/cluster, so the ~8 minute cold compile of
// Kubernetes is paid once per machine, not once per flag combination.
// -ldflags only changes the link step, so both steps share compiled packages.
func buildArgs(out string, s step) []string {
	return append([]string{"build", "-ldflags", s.ldflags, "-o", out + "/"}, s.pkgs...)
}

// DefaultRoot is ${XDG_CACHE_HOME:-$HOME/.cache}/vk-applevm/controlplane/<version>.
func DefaultRoot() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache dir: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "vk-applevm", "controlplane", KubeVersion), nil
}

// Options configure Build.
type Options struct {
	Src fs.FS  // go.mod, go.sum, cmd/<name>/main.go
	Out string // where the binaries go; default <DefaultRoot>/bin
	// SrcDir is where Src is unpacked; default <dir of Out>/src.
	SrcDir string
	Log    *slog.Logger
}

// Build makes sure Out holds up-to-date binaries and returns Out.
func Build(ctx context.Context, o Options) (string, error) {
	if o.Out == "" {
		root, err := DefaultRoot()
		if err != nil {
			return "", err
		}
		o.Out = filepath.Join(root, "bin")
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return "", fmt.Errorf("resolving --out: %w", err)
	}
	if o.SrcDir == "" {
		o.SrcDir = filepath.Join(filepath.Dir(out), "src")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", out, err)
	}
	// Serialize concurrent builds (make and an e2e run at once) on a lock file.
	unlock, err := lock(filepath.Join(out, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the Go toolchain is not in PATH: install Go 1.26 or newer (https://go.dev/dl) — the control plane is built from source")
	}
	gover, err := goVersion(ctx, gobin)
	if err != nil {
		return "", err
	}
	stamp, err := fingerprint(o.Src, gover)
	if err != nil {
		return "", err
	}
	stampPath := filepath.Join(out, ".stamp")
	if old, err := os.ReadFile(stampPath); err == nil && string(old) == stamp && all(out) {
		o.Log.Info("control-plane binaries are up to date", "dir", out, "kubernetes", KubeVersion,
			"etcd", EtcdVersion, "metricsServer", MetricsServerVersion)
		return out, nil
	}

	if err := unpack(o.Src, o.SrcDir); err != nil {
		return "", err
	}
	if _, err := os.Stat(stampPath); err != nil {
		o.Log.Info("building kube-apiserver, kube-controller-manager, kube-scheduler " + KubeVersion +
			", etcd " + EtcdVersion + " and metrics-server " + MetricsServerVersion +
			" from the Go module proxy (first time: ~8 min on 2 cores)")
	} else {
		o.Log.Info("rebuilding control-plane binaries (source or Go toolchain changed; mostly cached)")
	}
	// Invalidate first: an interrupted build must not leave a valid stamp.
	_ = os.Remove(stampPath)
	start := time.Now()
	for _, st := range steps {
		stepStart := time.Now()
		args := buildArgs(out, st)
		cmd := exec.CommandContext(ctx, gobin, args...)
		cmd.Dir = o.SrcDir
		// GOWORK=off: a go.work above the cache dir must not capture this module.
		// -mod=readonly: go.sum is embedded and complete; never rewrite it.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		o.Log.Info("running", "cmd", "go "+strings.Join(args, " "), "dir", o.SrcDir)
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("building %v in %s: %w", st.pkgs, o.SrcDir, err)
		}
		o.Log.Info("built", "pkgs", st.pkgs, "took", time.Since(stepStart).Round(100*time.Millisecond))
	}
	if !all(out) {
		return "", fmt.Errorf("go build succeeded but %s lacks some of %v", out, Binaries)
	}
	if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("writing build stamp: %w", err)
	}
	o.Log.Info("built control-plane binaries", "dir", out, "took", time.Since(start).Round(time.Second))
	return out, nil
}

func all(dir string) bool {
	for _, b := range Binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func goVersion(ctx context.Context, gobin string) (string, error) {
	out, err := exec.CommandContext(ctx, gobin, "env", "GOVERSION", "GOOS", "GOARCH", "CGO_ENABLED").Output()
	if err != nil {
		return "", fmt.Errorf("asking the Go toolchain for its version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// fingerprint hashes every embedded file, the toolchain and the flags.
func fingerprint(src fs.FS, gover string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", gover)
	for _, st := range steps {
		fmt.Fprintf(h, "%s\n", strings.Join(buildArgs("", st), " "))
	}
	var paths []string
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("listing embedded source: %w", err)
	}
	slices.Sort(paths)
	for _, p := range paths {
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return "", fmt.Errorf("reading embedded %s: %w", p, err)
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unpack writes src into dir, replacing what was there.
func unpack(src fs.FS, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cleaning %s: %w", dir, err)
	}
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("unpacking build source into %s: %w", dir, err)
	}
	return nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		slog.Info("another build of the control plane is running; waiting for it", "lock", path)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil
}
