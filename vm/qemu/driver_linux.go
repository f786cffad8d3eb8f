package qemu

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Driver runs machines as qemu-system processes.
type Driver struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	verdict *Verdict // per host arch, found once per Driver

	// sharedMemory backs every machine's RAM with a shared memfd, shares
	// or not (the boot benchmark compares).
	sharedMemory bool
}

var _ vm.Driver = (*Driver)(nil)

// New returns a Driver.
func New(opts Options) *Driver {
	if opts.ProbeTimeout == 0 {
		opts.ProbeTimeout = 6 * time.Second
	}
	if opts.CacheDir == "" {
		if base, err := os.UserCacheDir(); err == nil {
			opts.CacheDir = filepath.Join(base, "vk-applevm", "qemu")
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{opts: opts, log: log.With("backend", "qemu")}
}

// Name implements vm.Driver.
func (d *Driver) Name() string { return "qemu" }

// Binary is the path of the qemu-system binary for arch that machines run.
func (d *Driver) Binary(arch string) (string, error) { return d.binary(arch) }

func (d *Driver) binary(arch string) (string, error) {
	name := d.opts.Binary
	if name == "" {
		var ok bool
		if name, ok = binaryFor(arch); !ok {
			return "", fmt.Errorf("no QEMU binary for arch %q", arch)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := "qemu-system-x86"
		if arch == "arm64" {
			pkg = "qemu-system-arm"
		}
		return "", fmt.Errorf("find %s (apt-get install %s): %w", name, pkg, err)
	}
	return p, nil
}

// Check implements vm.Driver: the QEMU binary and virtiofsd (for shared
// directories; pods with emptyDirs need it) are there, and an accelerator
// is chosen (probing KVM once if needed).
func (d *Driver) Check(ctx context.Context) error {
	if _, err := d.binary(runtime.GOARCH); err != nil {
		return err
	}
	if _, err := d.virtiofsdBinary(); err != nil {
		return err
	}
	v, err := d.Accelerator(ctx)
	if err != nil {
		return err
	}
	d.log.Debug("accelerator", "accel", v.Accel, "reason", v.Reason)
	return nil
}

// Start implements vm.Driver.
func (d *Driver) Start(ctx context.Context, spec vm.Spec, dir string) (vm.Machine, error) {
	accel := AccelTCG
	if spec.Arch == runtime.GOARCH {
		v, err := d.Accelerator(ctx)
		if err != nil {
			return nil, err
		}
		accel = v.Accel
	}
	return d.start(ctx, spec, dir, accel)
}

func (d *Driver) start(ctx context.Context, spec vm.Spec, dir string, accel Accel) (*machine, error) {
	bin, err := d.binary(spec.Arch)
	if err != nil {
		return nil, err
	}
	tb := d.opts.TCGCodeBufferMiB
	if env := os.Getenv(TCGCodeBufferEnv); tb == 0 && env != "" {
		n, err := strconv.Atoi(env)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want a size in MiB or -1", TCGCodeBufferEnv, env)
		}
		tb = n
	}
	if tb == 0 {
		tb = DefaultTCGCodeBufferMiB
	}
	cfg := Config{Accel: accel, Machine: d.opts.Machine, Dir: dir, SharedMemory: d.sharedMemory, TCGCodeBufferMiB: tb}
	args, err := Args(spec, cfg)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	// Sockets of an earlier run would let Port connect to nothing.
	stale, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, s := range stale {
		os.Remove(s)
	}
	// One descriptor per NIC, in order (Args numbers them); Start owns
	// them, and QEMU holds its own copies once it runs.
	var nicFiles []*os.File
	defer func() {
		for _, f := range nicFiles {
			f.Close()
		}
	}()
	for _, n := range spec.NICs {
		switch n.Attachment.Kind {
		case vm.AttachTap:
			f, err := openTap(n.Attachment.Netns, n.Attachment.Tap, !d.opts.NoVnetHdr)
			if err != nil {
				return nil, fmt.Errorf("start %s: %w", spec.ID, err)
			}
			nicFiles = append(nicFiles, f)
		case vm.AttachSwitch:
			if n.Attachment.File == nil {
				return nil, fmt.Errorf("start %s: NIC %s: the shim gave no switch socket", spec.ID, n.MAC)
			}
			nicFiles = append(nicFiles, n.Attachment.File)
		}
	}
	fsds, err := d.startVirtiofsds(spec, dir)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	started := false
	defer func() {
		if !started {
			for _, v := range fsds {
				v.stop()
			}
		}
	}()
	logFile, err := os.OpenFile(filepath.Join(dir, "qemu.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open qemu log: %w", spec.ID, err)
	}
	defer logFile.Close()

	// The console: QEMU writes a pipe (ConsoleFD), the machine drains it
	// into the capped log. Both ends are close-on-exec here; only QEMU
	// gets the write end, so the reader sees EOF when QEMU is gone.
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: console pipe: %w", spec.ID, err)
	}
	defer consoleW.Close()

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = append(append([]*os.File{}, nicFiles...), consoleW)
	if spec.RestoreFrom != "" {
		state, err := os.Open(spec.RestoreFrom)
		if err != nil {
			return nil, fmt.Errorf("start %s: open the saved machine: %w", spec.ID, err)
		}
		defer state.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, state) // RestoreFD
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// QEMU dies with the shim (design.md). Setpgid keeps terminal
		// signals meant for the shim's group away from QEMU.
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   true,
	}
	m := newMachine(spec, dir, cmd, fsds, d.log.With("vm", spec.ID))
	if err := m.run(consoleR); err != nil {
		consoleR.Close()
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	started = true
	d.log.Info("qemu started", "vm", spec.ID, "pid", m.Pid(), "accel", accel, "args", args)
	return m, nil
}

// startVirtiofsds starts one virtiofsd per share; on error none is left.
func (d *Driver) startVirtiofsds(spec vm.Spec, dir string) ([]*virtiofsd, error) {
	if len(spec.Shares) == 0 {
		return nil, nil
	}
	bin, err := d.virtiofsdBinary()
	if err != nil {
		return nil, err
	}
	var fsds []*virtiofsd
	for i, sh := range spec.Shares {
		v, err := startVirtiofsd(bin, dir, i, sh, d.log.With("vm", spec.ID))
		if err != nil {
			for _, v := range fsds {
				v.stop()
			}
			return nil, err
		}
		fsds = append(fsds, v)
	}
	return fsds, nil
}
