package rootfsbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/image/rootfs"
)

// Comparison times rootfs.Build from plain tar layers and from gzip
// layers against `mkfs.ext4 -q -F -d TREE IMG SIZE` on the same tree,
// extracted beforehand.
type Comparison struct {
	Tree      Tree
	Tar, Gzip []v1.Layer
	// Src is the extracted tree, Mkfs the mkfs.ext4 binary.
	Src, Mkfs string
	work      string
	n         int
}

// Timing is one run of one variant: wall time, and the CPU time of the
// process that did the work (this one for Build, mkfs.ext4 for mkfs).
type Timing struct {
	Wall, CPU time.Duration
}

// Round is one run of each variant.
type Round struct {
	Build, BuildGzip, Mkfs Timing
}

// MkfsHint says how to get mkfs.ext4.
const MkfsHint = "install e2fsprogs (apt-get install e2fsprogs)"

// FindMkfs returns the mkfs.ext4 binary.
func FindMkfs() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, "mkfs.ext4"); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("mkfs.ext4 not found: %s", MkfsHint)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// NewComparison prepares the layers and the extracted tree under work,
// which the caller removes.
func NewComparison(t Tree, work string) (*Comparison, error) {
	mkfs, err := FindMkfs()
	if err != nil {
		return nil, err
	}
	c := &Comparison{Tree: t, Src: filepath.Join(work, "tree"), Mkfs: mkfs, work: work}
	if c.Tar, err = t.V1Layers(false); err != nil {
		return nil, err
	}
	if c.Gzip, err = t.V1Layers(true); err != nil {
		return nil, err
	}
	if err := Extract(c.Tar, c.Src); err != nil {
		return nil, err
	}
	return c, nil
}

// Round runs the three variants back to back; the order rotates with the
// round number, so none always runs first (or after the same one).
func (c *Comparison) Round(ctx context.Context) (Round, error) {
	c.n++
	var r Round
	steps := []func() error{
		func() (err error) { r.Build, err = c.build(ctx, c.Tar); return },
		func() (err error) { r.BuildGzip, err = c.build(ctx, c.Gzip); return },
		func() (err error) { r.Mkfs, err = c.mkfs(ctx); return },
	}
	for i := range steps {
		if err := steps[(i+c.n)%len(steps)](); err != nil {
			return Round{}, err
		}
	}
	return r, nil
}

func (c *Comparison) build(ctx context.Context, layers []v1.Layer) (Timing, error) {
	dst := filepath.Join(c.work, fmt.Sprintf("build-%d.ext4", c.n))
	defer os.Remove(dst)
	cpu0, err := selfCPU()
	if err != nil {
		return Timing{}, err
	}
	start := time.Now()
	if _, err := rootfs.Build(ctx, layers, dst); err != nil {
		return Timing{}, err
	}
	wall := time.Since(start)
	cpu1, err := selfCPU()
	if err != nil {
		return Timing{}, err
	}
	return Timing{Wall: wall, CPU: cpu1 - cpu0}, nil
}

func (c *Comparison) mkfs(ctx context.Context) (Timing, error) {
	dst := filepath.Join(c.work, fmt.Sprintf("mkfs-%d.ext4", c.n))
	defer os.Remove(dst)
	cmd := exec.CommandContext(ctx, c.Mkfs, "-q", "-F", "-d", c.Src, dst, c.Tree.MkfsSize())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return Timing{}, fmt.Errorf("mkfs.ext4: %w\n%s", err, out)
	}
	st := cmd.ProcessState
	return Timing{Wall: wall, CPU: st.UserTime() + st.SystemTime()}, nil
}

// selfCPU is the CPU time this process has used (all threads).
func selfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
