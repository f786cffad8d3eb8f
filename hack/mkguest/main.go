// Command mkguest builds the guest bundle: Debian's cloud kernel, an initrd
// with the guest agent as /init and the kernel modules it loads, and
// bundle.json describing them (see package guest).
//
//	mkguest --agent bin/vk-applevm-agent [--floor-init bin/floorinit] [--out bin/guest/amd64]
//
// It runs as root on a Debian host: the kernel comes from apt
// (`apt-cache depends linux-image-cloud-<arch>`, `apt-get download`,
// `dpkg-deb -x`) and is cached under ${XDG_CACHE_HOME:-~/.cache}/vk-applevm/kernel.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vk-applevm/vk-applevm/guest"
)

var hostArch = runtime.GOARCH

type options struct {
	arch      string
	agent     string
	floorInit string
	out       string
	cache     string
}

func main() {
	var o options
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "guest architecture: amd64 or arm64")
	flag.StringVar(&o.agent, "agent", "", "static guest agent binary, installed as /init (required)")
	flag.StringVar(&o.floorInit, "floor-init", "", "static hack/floorinit binary; also writes floor-initrd.img")
	flag.StringVar(&o.out, "out", "", "bundle directory (default bin/guest/<arch>)")
	flag.StringVar(&o.cache, "cache", "", "kernel download cache (default ${XDG_CACHE_HOME:-~/.cache}/vk-applevm/kernel)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := build(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "mkguest: %v\n", err)
		os.Exit(1)
	}
}

func build(ctx context.Context, o options) error {
	if _, ok := debianArch[o.arch]; !ok {
		return fmt.Errorf("--arch %q: want amd64 or arm64", o.arch)
	}
	if o.agent == "" {
		return errors.New("--agent is required (a static binary for the guest, e.g. CGO_ENABLED=0 go build ./cmd/vk-applevm-agent)")
	}
	if o.out == "" {
		o.out = filepath.Join("bin", "guest", o.arch)
	}
	if o.cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("find a cache directory (set --cache): %w", err)
		}
		o.cache = filepath.Join(base, "vk-applevm", "kernel")
	}
	for _, bin := range []string{o.agent, o.floorInit} {
		if bin == "" {
			continue
		}
		if err := checkStaticBinary(bin); err != nil {
			return err
		}
	}

	var tree kernelTree
	pkg, release, err := currentKernelPackage(ctx, o.arch)
	if err == nil {
		tree, err = fetchKernel(ctx, o.cache, o.arch, pkg, release)
	}
	if err != nil {
		// Offline, or apt lists not fetched: a kernel cached earlier will do.
		cached, ok := newestCachedKernel(o.cache, o.arch)
		if !ok {
			return err
		}
		slog.Warn("cannot ask apt for the current kernel; using the cached one", "release", cached.Release, "err", err)
		tree, release = cached, cached.Release
	}
	mods, err := guest.OpenModuleTree(tree.modules())
	if err != nil {
		return err
	}
	res, err := mods.Resolve(guest.DefaultModules)
	if err != nil {
		return err
	}
	slog.Info("kernel modules resolved", "release", release, "load", len(res.Order),
		"builtin", strings.Join(res.Builtin, ","), "absent", strings.Join(res.Absent, ","))

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create bundle directory: %w", err)
	}
	b := guest.Bundle{Arch: o.arch, KernelRelease: release}
	if b.Kernel, err = installKernel(tree, o.arch, o.out); err != nil {
		return err
	}
	b.Initrd = filepath.Join(o.out, "initrd.img")
	if err := writeInitrdAtomic(b.Initrd, o.agent, res.Order); err != nil {
		return err
	}
	if o.floorInit != "" {
		b.FloorInitrd = filepath.Join(o.out, "floor-initrd.img")
		if err := writeInitrdAtomic(b.FloorInitrd, o.floorInit, res.Order); err != nil {
			return err
		}
	}
	if err := b.WriteManifest(o.out); err != nil {
		return err
	}
	slog.Info("guest bundle written", "dir", o.out, "kernel", release)
	return nil
}

// installKernel copies the kernel into out. Under vz an arm64 kernel must be
// an uncompressed Image (anchors: Apple containerization), while Debian's
// arm64 vmlinuz is gzip-compressed, so it is inflated there.
func installKernel(tree kernelTree, arch, out string) (string, error) {
	src, err := os.Open(tree.vmlinuz())
	if err != nil {
		return "", fmt.Errorf("install kernel: %w", err)
	}
	defer src.Close()
	name, r := "vmlinuz", io.Reader(src)
	if arch == "arm64" {
		name = "Image"
		if r, err = maybeGunzip(src); err != nil {
			return "", fmt.Errorf("install kernel %s: %w", tree.vmlinuz(), err)
		}
	}
	dst := filepath.Join(out, name)
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("install kernel %s: %w", tree.vmlinuz(), err)
	}
	if err := guest.WriteFileAtomic(dst, data, 0o644); err != nil {
		return "", fmt.Errorf("install kernel: %w", err)
	}
	return dst, nil
}

func writeInitrdAtomic(dst, init string, order []guest.Module) error {
	tmp := dst + ".tmp"
	if err := guest.WriteInitrd(tmp, init, order); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
