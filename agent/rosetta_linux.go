package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/binfmt"
)

// rosettaTag is the virtio-fs tag vz exports Rosetta under (vm/vz's
// RosettaTag; the agent imports nothing host-side).
const rosettaTag = "rosetta"

// setupRosetta mounts the host's Rosetta share at <StateDir>/rosetta and
// registers its translator for x86-64 ELF executables. The F flag makes
// the kernel hold the translator open, so processes chrooted into a
// container's root filesystem, where the share is not visible, use it too.
func (s *Server) setupRosetta(ctx context.Context) error {
	// virtiofs is a module in some guest kernels (Debian's); vz's pinned
	// kernel has it built in.
	if err := s.waitModules(ctx, "rosetta"); err != nil {
		return err
	}
	dir := filepath.Join(s.cfg.StateDir, "rosetta")
	translator := filepath.Join(dir, "rosetta")
	if _, err := os.Stat(translator); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("rosetta: %w", err)
		}
		err := unix.Mount(rosettaTag, dir, "virtiofs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
		switch {
		case errors.Is(err, unix.ENODEV):
			return fmt.Errorf("rosetta: mount virtio-fs tag %q: the guest kernel has no virtiofs: %w", rosettaTag, ErrFailedPrecondition)
		case err != nil:
			// The tag is missing (ENOENT/EINVAL) when the host did not
			// share Rosetta; the host decides that, not the guest.
			return fmt.Errorf("rosetta: mount virtio-fs tag %q on %s (did the host share Rosetta?): %v: %w",
				rosettaTag, dir, err, ErrFailedPrecondition)
		}
		if _, err := os.Stat(translator); err != nil {
			return fmt.Errorf("rosetta: the share holds no translator: %v: %w", err, ErrFailedPrecondition)
		}
	}
	procBinfmt := filepath.Join(s.cfg.ProcSysDir, "fs", "binfmt_misc")
	if err := binfmt.Register(procBinfmt, binfmt.Rosetta(translator)); err != nil {
		if errors.Is(err, binfmt.ErrNoKernelSupport) {
			return fmt.Errorf("rosetta: %v: %w", err, ErrFailedPrecondition)
		}
		return fmt.Errorf("rosetta: %w", err)
	}
	s.cfg.Log.InfoContext(ctx, "x86-64 binaries run through Rosetta", "translator", translator)
	return nil
}
