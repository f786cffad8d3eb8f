package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/google/renameio/v2"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/ext4"
	"github.com/vk-applevm/vk-applevm/internal/filetail"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

// Config configures a Runtime.
type Config struct {
	// Root is the state directory; VMs live in Root/vms/<id>.
	Root    string
	Images  *image.Store
	Network network.Network
	Guest   guest.Bundle
	// Driver names the hypervisor backend the shims use ("qemu", "vz").
	Driver string
	// ShimArgv overrides how a shim is started (tests); the VM directory
	// is appended after "--dir".
	ShimArgv []string
	// OverheadBytes is added to every VM's memory (default
	// DefaultOverheadBytes).
	OverheadBytes uint64
	// BootTimeout bounds the wait for the guest agent (default 2 min: TCG
	// boots take seconds, a loaded CI machine many more).
	BootTimeout time.Duration
	// Templates, when set, resumes machines from saved templates of their
	// shape instead of booting them (vmtemplate; opt-in). Nil boots.
	Templates *vmtemplate.Store
	// Rosetta, when set, lets linux/amd64 images run in arm64 guests
	// through Rosetta (vz on Apple silicon); nil: images must match the
	// guest's architecture.
	Rosetta RosettaCheck
	Logger  *slog.Logger
}

// Runtime creates and finds VMs.
type Runtime struct {
	cfg Config
	log *slog.Logger
}

// New checks the configuration and returns a Runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.Root == "" || cfg.Images == nil || cfg.Network == nil || cfg.Driver == "" {
		return nil, errors.New("container runtime: root, images, network and driver are required")
	}
	if cfg.Guest.Kernel == "" || cfg.Guest.Initrd == "" {
		return nil, fmt.Errorf("container runtime: %w", guest.ErrNoBundle)
	}
	if cfg.OverheadBytes == 0 {
		cfg.OverheadBytes = DefaultOverheadBytes
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Join(cfg.Root, "vms"), 0o700); err != nil {
		return nil, fmt.Errorf("create VM directory: %w", err)
	}
	return &Runtime{cfg: cfg, log: cfg.Logger}, nil
}

// Overhead is the memory added to every VM.
func (r *Runtime) Overhead() uint64 { return r.cfg.OverheadBytes }

// Images is the runtime's image store.
func (r *Runtime) Images() *image.Store { return r.cfg.Images }

func (r *Runtime) vmDir(id string) string { return filepath.Join(r.cfg.Root, "vms", id) }

var idPattern = regexp.MustCompile(`^[0-9a-f]{12}$`)

// NewID returns a random VM id.
func NewID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// record is the VM's own metadata, next to the shim's files.
type record struct {
	Config VMConfig `json:"config"`
	// Image is repository@digest; ImageDigest the platform manifest digest
	// (what the image store's Prune is told is in use).
	Image       string            `json:"image"`
	ImageDigest string            `json:"imageDigest"`
	Endpoint    *network.Endpoint `json:"endpoint,omitempty"`
	// Rosetta: the image is linux/amd64 in an arm64 guest (see needsRosetta).
	Rosetta bool      `json:"rosetta,omitempty"`
	Created time.Time `json:"created"`
	// Mounts' files are not persisted; Reset recreates files volumes
	// empty and the caller rewrites them.
}

// recordFile keeps its name from when a VM was called a sandbox, so VMs of
// an earlier node version are still found.
const recordFile = "sandbox.json"

func writeRecord(dir string, rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	// fsynced before the rename: after a host crash the record is the old
	// or the new one, never a torn file that makes the VM debris.
	if err := renameio.WriteFile(filepath.Join(dir, recordFile), b, 0o600, renameio.WithTempDir(dir)); err != nil {
		return fmt.Errorf("write VM record: %w", err)
	}
	return nil
}

func readRecord(dir string) (record, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("parse %s: %w", filepath.Join(dir, recordFile), err)
	}
	return rec, nil
}

// Create boots the VM of one container: root disk from the (already
// pulled) image, a fresh writable disk, an address, the shim, and the
// container's root filesystem and mounts inside the guest. On failure
// everything it made is removed and the error carries the guest's console
// tail.
func (r *Runtime) Create(ctx context.Context, cfg VMConfig) (_ *VM, retErr error) {
	began := time.Now()
	id := cfg.ID
	if id == "" {
		id = NewID()
	}
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("VM id %q must be 12 lower-case hex characters", id)
	}
	cfg.ID = id
	if err := cfg.Security.Check(); err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	img, err := r.cfg.Images.Get(ctx, cfg.ImageRef)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.ImageRef, err)
	}
	rosetta, err := needsRosetta(ctx, img.Platform, r.cfg.Guest.Arch, r.cfg.Rosetta)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.ImageRef, err)
	}
	rootfs, err := r.cfg.Images.Rootfs(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("root filesystem of %s: %w", cfg.ImageRef, err)
	}
	dir := r.vmDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("VM %s already exists", id)
		}
		return nil, fmt.Errorf("create VM directory: %w", err)
	}
	var sc *shim.Client
	attached := false
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if sc != nil {
			_ = sc.Delete(cctx)
		}
		if attached {
			if pub, ok := r.cfg.Network.(network.Publisher); ok && len(cfg.Publish) > 0 {
				_ = pub.Publish(cctx, id, netip.Addr{}, nil)
			}
			_ = r.cfg.Network.Detach(cctx, id)
			if cfg.Network.Pod == "" {
				_ = r.cfg.Network.ReleasePod(cctx, id)
			}
		}
		_ = os.RemoveAll(dir)
	}()

	scratchSize := cfg.ScratchBytes
	if scratchSize <= 0 {
		scratchSize = DefaultScratchBytes
	}
	scratch := filepath.Join(dir, "scratch.ext4")
	if err := ext4.CreateEmpty(scratch, scratchSize); err != nil {
		return nil, fmt.Errorf("create writable layer: %w", err)
	}
	cfg.Mounts = placeOwnVolumeDisks(dir, cfg.Mounts)
	if err := prepareVolumes(cfg.Mounts); err != nil {
		return nil, err
	}
	ep, err := r.cfg.Network.Attach(ctx, id, cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("attach to the VM network: %w", err)
	}
	attached = true
	if len(cfg.Publish) > 0 {
		pub, ok := r.cfg.Network.(network.Publisher)
		if !ok {
			return nil, fmt.Errorf("publish ports: %w by this network", vm.ErrNotSupported)
		}
		if err := pub.Publish(ctx, id, ep.IP, cfg.Publish); err != nil {
			return nil, fmt.Errorf("publish ports: %w", err)
		}
	}
	rec := record{Config: cfg, Image: img.DigestRef(), ImageDigest: img.Digest, Endpoint: ep, Rosetta: rosetta, Created: time.Now().UTC()}
	if err := writeRecord(dir, rec); err != nil {
		return nil, err
	}
	if cfg.LogDir != "" {
		if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("create log directory: %w", err)
		}
	}
	spec := machineSpec(machineInputs{
		ID: id, Arch: r.cfg.Guest.Arch, Kernel: r.cfg.Guest.Kernel, Initrd: r.cfg.Guest.Initrd,
		Dir: dir, Rootfs: rootfs, Scratch: scratch, Endpoint: ep, Cfg: cfg, Overhead: r.cfg.OverheadBytes,
		Rosetta: rosetta,
	})
	if r.cfg.Templates != nil {
		state, err := r.cfg.Templates.Get(ctx, spec)
		switch {
		case err == nil:
			spec.RestoreFrom = state
		case !errors.Is(err, vmtemplate.ErrNotEligible):
			// A machine without a template boots: slower, never worse.
			r.log.Warn("no VM template: booting", "id", id, "err", err)
		}
	}
	var opts []shim.LaunchOption
	if len(r.cfg.ShimArgv) > 0 {
		opts = append(opts, shim.WithArgv(append(append([]string{}, r.cfg.ShimArgv...), "--dir", dir)...))
	}
	sc, err = shim.Launch(ctx, dir, shim.Config{
		Spec: spec, Driver: r.cfg.Driver, LogDir: cfg.LogDir,
		MemoryFloorMiB: (cfg.MemoryRequestBytes + r.cfg.OverheadBytes) >> 20,
	}, opts...)
	if err != nil {
		return nil, r.resumeFailed(ctx, spec, fmt.Errorf("start VM: %w", err))
	}
	launched := time.Now()
	sb := &VM{rt: r, id: id, dir: dir, rec: rec, shim: sc}
	ready, err := sb.boot(ctx)
	if err != nil {
		sb.closeAgent()
		return nil, r.resumeFailed(ctx, spec, fmt.Errorf("%w%s", err, consoleTail(dir)))
	}
	// The steps' durations show where a start goes (make bench reads them
	// at debug level).
	done := time.Now()
	r.log.Debug("VM created", "id", id, "name", cfg.Name, "image", cfg.ImageRef, "ip", sb.IP(), "resumed", spec.RestoreFrom != "",
		"host", launched.Sub(began), "boot", ready.Sub(launched), "setup", done.Sub(ready))
	return sb, nil
}

// resumeFailed discards the template a machine that did not start was
// resumed from, so the next machine of the shape builds a new one; not
// when the create was called off, which is no fault of the template.
func (r *Runtime) resumeFailed(ctx context.Context, spec vm.Spec, err error) error {
	if spec.RestoreFrom == "" || ctx.Err() != nil {
		return err
	}
	if derr := r.cfg.Templates.Discard(spec); derr != nil {
		r.log.Warn("discard the VM template", "err", derr)
	}
	return fmt.Errorf("resumed from the VM template %s (discarded): %w", spec.RestoreFrom, err)
}

// boot waits for the agent and configures the guest and the container; it
// returns when the agent answered.
func (s *VM) boot(ctx context.Context) (ready time.Time, _ error) {
	bctx, cancel := context.WithTimeout(ctx, s.rt.cfg.BootTimeout)
	defer cancel()
	ag, err := s.agentClient()
	if err != nil {
		return ready, err
	}
	if _, err := ag.WaitReady(bctx); err != nil {
		return ready, fmt.Errorf("wait for the guest agent: %w", err)
	}
	ready = time.Now()
	setup := setupRequest(s.rec.Config, s.rec.Endpoint, ready)
	setup.Rosetta = s.rec.Rosetta
	if _, err := ag.Setup(bctx, setup); err != nil {
		return ready, fmt.Errorf("configure the guest: %w", err)
	}
	req, err := createContainerRequest(s.id, s.rec.Config)
	if err != nil {
		return ready, err
	}
	if _, err := ag.CreateContainer(bctx, req); err != nil {
		return ready, fmt.Errorf("create the container's root filesystem: %w", err)
	}
	return ready, nil
}

// consoleTail returns the end of a VM's console log for error messages.
func consoleTail(dir string) string {
	b, err := filetail.Last(filepath.Join(dir, "console.log"), 2048)
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\nguest console (last lines):\n" + string(b)
}

// Get finds an existing VM.
func (r *Runtime) Get(ctx context.Context, id string) (*VM, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("VM %q: %w", id, ErrNotFound)
	}
	dir := r.vmDir(id)
	rec, err := readRecord(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("VM %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	sc, err := shim.Connect(dir)
	if err != nil && !errors.Is(err, shim.ErrShimDead) {
		return nil, fmt.Errorf("VM %s: %w", id, err)
	}
	if sc == nil {
		return nil, fmt.Errorf("VM %s: no shim client: %w", id, err)
	}
	return &VM{rt: r, id: id, dir: dir, rec: rec, shim: sc}, nil
}

// List returns every VM, oldest first. Directories that are not
// VMs (a crash between mkdir and the record) are removed.
func (r *Runtime) List(ctx context.Context) ([]*VM, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.Root, "vms"))
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	var out []*VM
	for _, e := range entries {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		sb, err := r.Get(ctx, e.Name())
		if err != nil {
			r.log.Warn("skip unreadable VM", "id", e.Name(), "err", err)
			continue
		}
		out = append(out, sb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Created.Before(out[j].rec.Created) })
	return out, nil
}

// Check reports whether VMs can be started: the guest bundle is there and
// the network works. The hypervisor is checked by the node through the
// driver.
func (r *Runtime) Check(ctx context.Context) error {
	for _, f := range []string{r.cfg.Guest.Kernel, r.cfg.Guest.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("guest bundle: %w", err)
		}
	}
	if err := r.cfg.Network.Check(ctx); err != nil {
		return fmt.Errorf("VM network: %w", err)
	}
	return nil
}
