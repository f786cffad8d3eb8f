package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// debianArch maps GOARCH to Debian's architecture name.
var debianArch = map[string]string{"amd64": "amd64", "arm64": "arm64"}

// kernelTree is one unpacked linux-image package.
type kernelTree struct {
	Release string // e.g. "6.1.0-56-cloud-amd64"
	Root    string // the dpkg-deb -x directory
}

func (k kernelTree) vmlinuz() string { return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release) }
func (k kernelTree) modules() string { return filepath.Join(k.Root, "lib", "modules", k.Release) }

var imageDepPattern = regexp.MustCompile(`^\s*Depends:\s*(linux-image-(\S+))\s*$`)

// currentKernelPackage asks apt which versioned package the cloud kernel
// meta package points at (linux-image-cloud-amd64 → linux-image-<release>).
func currentKernelPackage(ctx context.Context, arch string) (pkg, release string, err error) {
	meta := "linux-image-cloud-" + debianArch[arch]
	query := meta
	if arch != hostDebianArch() {
		query += ":" + debianArch[arch]
	}
	out, err := runCmd(ctx, "", "apt-cache", "depends", query)
	if err != nil {
		hint := "run `apt-get update` first"
		if arch != hostDebianArch() {
			hint = fmt.Sprintf("a foreign architecture needs `dpkg --add-architecture %s && apt-get update`", debianArch[arch])
		}
		return "", "", fmt.Errorf("find the current %s (%s): %w", meta, hint, err)
	}
	if pkg, release, ok := parseImageDepends(out); ok {
		return pkg, release, nil
	}
	return "", "", fmt.Errorf("apt-cache depends %s names no linux-image-<release> package:\n%s", query, out)
}

// parseImageDepends finds "Depends: linux-image-<release>" in the output of
// `apt-cache depends`.
func parseImageDepends(out []byte) (pkg, release string, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := imageDepPattern.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], m[2], true
		}
	}
	return "", "", false
}

// fetchKernel downloads and unpacks pkg into cache/<release>, unless an
// earlier run finished that already (marked by a file written last).
func fetchKernel(ctx context.Context, cache, arch, pkg, release string) (kernelTree, error) {
	dir := filepath.Join(cache, release)
	tree := kernelTree{Release: release, Root: filepath.Join(dir, "root")}
	done := filepath.Join(dir, ".unpacked")
	if _, err := os.Stat(done); err == nil {
		slog.Info("kernel already in the cache", "release", release, "dir", dir)
		return tree, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return kernelTree{}, fmt.Errorf("create kernel cache: %w", err)
	}
	// Test packages build bundles in parallel: one downloads, the others
	// wait and then find the mark.
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return kernelTree{}, err
	}
	defer unlock()
	if _, err := os.Stat(done); err == nil {
		return tree, nil
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		slog.Info("first run: downloading the kernel package (about 27 MB)", "package", pkg, "into", dir)
		name := pkg
		if arch != hostDebianArch() {
			name += ":" + debianArch[arch]
		}
		if _, err := runCmd(ctx, dir, "apt-get", "download", name); err != nil {
			return kernelTree{}, fmt.Errorf("download %s: %w", name, err)
		}
		debs, _ = filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(debs) != 1 {
			return kernelTree{}, fmt.Errorf("download %s: expected one .deb in %s, found %d", pkg, dir, len(debs))
		}
	}
	slog.Info("first run: unpacking the kernel package", "deb", debs[0])
	if err := os.RemoveAll(tree.Root); err != nil {
		return kernelTree{}, fmt.Errorf("clear %s: %w", tree.Root, err)
	}
	if _, err := runCmd(ctx, "", "dpkg-deb", "-x", debs[0], tree.Root); err != nil {
		return kernelTree{}, fmt.Errorf("unpack %s: %w", debs[0], err)
	}
	for _, p := range []string{tree.vmlinuz(), tree.modules()} {
		if _, err := os.Stat(p); err != nil {
			return kernelTree{}, fmt.Errorf("unpacked %s lacks %s: %w", debs[0], p, err)
		}
	}
	if err := os.WriteFile(done, []byte(debs[0]+"\n"), 0o644); err != nil {
		return kernelTree{}, fmt.Errorf("mark kernel cache complete: %w", err)
	}
	return tree, nil
}

func hostDebianArch() string { return debianArch[hostArch] }

func runCmd(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s not found (mkguest needs a Debian host with apt and dpkg): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// newestCachedKernel returns the highest release fully unpacked in cache
// for arch (releases end in -<debian arch>, e.g. 6.1.0-56-cloud-amd64).
func newestCachedKernel(cache, arch string) (kernelTree, bool) {
	marks, _ := filepath.Glob(filepath.Join(cache, "*-"+debianArch[arch], ".unpacked"))
	if len(marks) == 0 {
		return kernelTree{}, false
	}
	slices.SortFunc(marks, func(a, b string) int {
		return compareReleases(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	dir := filepath.Dir(marks[len(marks)-1])
	return kernelTree{Release: filepath.Base(dir), Root: filepath.Join(dir, "root")}, true
}

// compareReleases orders "6.1.0-56-cloud-amd64" before "6.1.0-100-cloud-amd64"
// by comparing runs of digits numerically.
func compareReleases(a, b string) int {
	for a != "" && b != "" {
		na, ra := leadingNumber(a)
		nb, rb := leadingNumber(b)
		switch {
		case na >= 0 && nb >= 0:
			if na != nb {
				return cmp.Compare(na, nb)
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return cmp.Compare(a[0], b[0])
		default:
			a, b = a[1:], b[1:]
		}
	}
	return cmp.Compare(len(a), len(b))
}

// leadingNumber parses the digits at the start of s (-1 if none).
func leadingNumber(s string) (int, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return -1, s
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return -1, s
	}
	return n, s[i:]
}

// lockFile takes an exclusive flock(2) on path, waiting for other holders.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock kernel cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock kernel cache %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
