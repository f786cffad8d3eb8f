// Package guest describes the guest bundle — the kernel and the initial
// ramdisk every VM boots — and builds the ramdisk's module set.
//
// A bundle is a directory holding bundle.json next to the files it names.
// hack/mkguest builds one (`make guest`) from Debian's cloud kernel; the
// runtime looks for it under <root>/guest/<arch> and next to its own binary
// (bin/guest/<arch>).
package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ManifestName is the file in a bundle directory that describes it.
const ManifestName = "bundle.json"

// ErrNoBundle is wrapped by Find and Locate when no usable bundle exists.
var ErrNoBundle = errors.New("no guest bundle (build one with `make guest`)")

// Bundle is one kernel and the ramdisks that boot with it. Paths are
// absolute once returned by Find; in bundle.json they are relative to the
// bundle directory so the directory can move.
type Bundle struct {
	// Arch is the guest architecture: "amd64" or "arm64".
	Arch string `json:"arch"`
	// Kernel is the kernel image (bzImage on amd64, uncompressed Image on
	// arm64 for vz).
	Kernel string `json:"kernel"`
	// Initrd holds the guest agent as /init and the modules it loads.
	Initrd string `json:"initrd"`
	// KernelRelease is `uname -r` of Kernel, e.g. "6.1.0-56-cloud-amd64".
	KernelRelease string `json:"kernelRelease"`
	// FloorInitrd, when present, holds hack/floorinit instead of the agent:
	// it loads only the agent port's modules, writes "ready\n" to the port
	// and powers off. Backends boot it to probe an accelerator; benchmarks
	// boot it to measure the kernel + channel floor.
	FloorInitrd string `json:"floorInitrd,omitempty"`
}

// Find reads dir/bundle.json and checks that the files it names exist.
func Find(dir string) (Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Bundle{}, fmt.Errorf("find guest bundle in %s: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(abs, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return Bundle{}, fmt.Errorf("%w: %s has no %s", ErrNoBundle, abs, ManifestName)
	}
	if err != nil {
		return Bundle{}, fmt.Errorf("find guest bundle in %s: %w", abs, err)
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return Bundle{}, fmt.Errorf("%w: parse %s: %v", ErrNoBundle, filepath.Join(abs, ManifestName), err)
	}
	if b.Arch == "" || b.Kernel == "" || b.Initrd == "" || b.KernelRelease == "" {
		return Bundle{}, fmt.Errorf("%w: %s lacks arch, kernel, initrd or kernelRelease",
			ErrNoBundle, filepath.Join(abs, ManifestName))
	}
	for _, p := range []*string{&b.Kernel, &b.Initrd, &b.FloorInitrd} {
		if *p == "" {
			continue
		}
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(abs, *p)
		}
		if _, err := os.Stat(*p); err != nil {
			return Bundle{}, fmt.Errorf("%w: %s names a missing file: %v", ErrNoBundle, ManifestName, err)
		}
	}
	return b, nil
}

// Locate finds the bundle for arch under root/guest/<arch> (root is the
// state directory, e.g. /var/lib/vk-applevm; empty skips it) and then next to
// the running executable, <dir of exe>/guest/<arch>.
func Locate(root, arch string) (Bundle, error) {
	var dirs []string
	if root != "" {
		dirs = append(dirs, filepath.Join(root, "guest", arch))
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "guest", arch))
	}
	var errs []error
	for _, d := range dirs {
		b, err := Find(d)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return Bundle{}, fmt.Errorf("locate %s guest bundle: %w", arch, errors.Join(append([]error{ErrNoBundle}, errs...)...))
}

// WriteManifest writes dir/bundle.json. Paths inside dir are stored relative
// to it. The file is replaced atomically.
func (b Bundle) WriteManifest(dir string) error {
	rel := b
	for _, p := range []*string{&rel.Kernel, &rel.Initrd, &rel.FloorInitrd} {
		if *p == "" {
			continue
		}
		if r, err := filepath.Rel(dir, *p); err == nil && filepath.IsLocal(r) {
			*p = r
		}
	}
	data, err := json.MarshalIndent(rel, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bundle manifest: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, ManifestName), append(data, '\n'), 0o644)
}

// WriteFileAtomic writes data to a temporary file next to name and renames
// it into place, so readers never see a partial file.
func WriteFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
