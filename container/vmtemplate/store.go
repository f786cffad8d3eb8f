// Package vmtemplate keeps saved guests that new machines resume from
// instead of booting: one template per machine shape, as Kata's VM
// templates and Firecracker's snapshots do. A template is an agent guest
// booted with TemplateCmdline, answered once and saved (vm.Saver) before
// it bound the drivers of devices whose host ends differ per machine
// (agent.HeldForResume): disks and NICs are the resumed machine's own.
//
// Templates are opt-in. Every machine resumed from one shares the
// template's kernel address layout (KASLR) and the agent's memory layout;
// the agent reseeds the kernel's random numbers at Setup
// (agent.ReseedRandom), but anything derived from them before the save is
// shared too.
package vmtemplate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/internal/filetail"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
)

// TemplateCmdline is added to a template guest's kernel command line; the
// kernel hands it to the agent (PID 1) as agent.TemplateEnv.
const TemplateCmdline = "vkavtemplate=1"

// DefaultMax is how many templates a store keeps; the least recently
// used go first. A template is about a sixth of its machine's memory
// (measured: 107 MB for 640 MiB).
const DefaultMax = 8

// buildTimeout bounds one template build: a boot under TCG on a loaded
// machine, the agent's modules and the save.
const buildTimeout = 3 * time.Minute

// ErrNotEligible: the machine cannot resume from a template.
var ErrNotEligible = errors.New("machine cannot resume from a template")

// Eligible says whether a machine of spec's shape can resume from a
// template: QEMU 7.2's vhost-user-fs cannot be migrated (virtio-fs
// shares), Rosetta is vz's, and a spec already restoring is taken.
func Eligible(spec vm.Spec) error {
	switch {
	case len(spec.Shares) > 0:
		return fmt.Errorf("%w: it has virtio-fs shares", ErrNotEligible)
	case spec.Rosetta:
		return fmt.Errorf("%w: it shares Rosetta", ErrNotEligible)
	case spec.RestoreFrom != "":
		return fmt.Errorf("%w: it already resumes %s", ErrNotEligible, spec.RestoreFrom)
	}
	return nil
}

// Options configure a Store.
type Options struct {
	// Dir holds the templates (created if missing).
	Dir string
	// Driver boots and saves template machines in this process; it must
	// be the backend the machines resuming them use, and its machines
	// must be vm.Savers.
	Driver vm.Driver
	// Stamps are files whose identity is part of every shape: the
	// hypervisor binary, for one (a state only loads into the QEMU that
	// wrote it). The spec's kernel and initrd always are.
	Stamps []string
	// Variant is what else a state depends on that no file says: the
	// accelerator (a state saved under TCG is not one to resume under KVM).
	Variant string
	// Max is how many templates are kept (default DefaultMax).
	Max    int
	Logger *slog.Logger
}

// Store builds and finds templates.
type Store struct {
	opts Options
	log  *slog.Logger
}

// New returns a Store keeping templates in opts.Dir.
func New(opts Options) (*Store, error) {
	if opts.Dir == "" || opts.Driver == nil {
		return nil, errors.New("VM templates: a directory and a driver are required")
	}
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("VM templates: %w", err)
	}
	return &Store{opts: opts, log: opts.Logger.With("component", "vmtemplate")}, nil
}

// shape is what a saved machine's state depends on. Host ends (disk
// images, NIC attachments and MACs, sockets, logs) are not: the resumed
// machine brings its own, and the template's guest never bound them.
type shape struct {
	Version   int         `json:"version"`
	Driver    string      `json:"driver"`
	Arch      string      `json:"arch"`
	Kernel    string      `json:"kernel"`
	Initrd    string      `json:"initrd"`
	Cmdline   string      `json:"cmdline"`
	CPUs      int         `json:"cpus"`
	MemoryMiB uint64      `json:"memoryMiB"`
	Disks     []shapeDisk `json:"disks"`
	NICMTUs   []int       `json:"nicMTUs"`
	Ports     []string    `json:"ports"`
	Stamps    []string    `json:"stamps"`
	Variant   string      `json:"variant"`
}

type shapeDisk struct {
	Serial   string `json:"serial"`
	ReadOnly bool   `json:"readOnly"`
	Discard  bool   `json:"discard"`
}

// shapeVersion changes when what a template holds changes meaning.
const shapeVersion = 1

// Key names the shape of spec; machines with the same key can resume the
// same template.
func (s *Store) Key(spec vm.Spec) (string, error) {
	sh := shape{Version: shapeVersion, Driver: s.opts.Driver.Name(), Arch: spec.Arch, Cmdline: spec.Cmdline,
		CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB, Ports: spec.Ports, Variant: s.opts.Variant}
	var err error
	if sh.Kernel, err = stamp(spec.Kernel); err != nil {
		return "", err
	}
	if sh.Initrd, err = stamp(spec.Initrd); err != nil {
		return "", err
	}
	for _, f := range s.opts.Stamps {
		st, err := stamp(f)
		if err != nil {
			return "", err
		}
		sh.Stamps = append(sh.Stamps, st)
	}
	for _, d := range spec.Disks {
		sh.Disks = append(sh.Disks, shapeDisk{Serial: d.Serial, ReadOnly: d.ReadOnly, Discard: d.Discard})
	}
	for _, n := range spec.NICs {
		sh.NICMTUs = append(sh.NICMTUs, n.MTU)
	}
	b, err := json.Marshal(sh)
	if err != nil {
		return "", fmt.Errorf("VM template key: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// stamp identifies a file by path, size and modification time: a rebuilt
// kernel, initrd or QEMU is a new shape.
func stamp(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("VM template key: %w", err)
	}
	return fmt.Sprintf("%s:%d:%d", path, fi.Size(), fi.ModTime().UnixNano()), nil
}

func (s *Store) statePath(key string) string { return filepath.Join(s.opts.Dir, key+".state") }

// Get returns the state a machine of spec's shape resumes from, building
// the template first when there is none (a boot and a save: seconds under
// TCG, once per shape).
func (s *Store) Get(ctx context.Context, spec vm.Spec) (string, error) {
	if err := Eligible(spec); err != nil {
		return "", err
	}
	key, err := s.Key(spec)
	if err != nil {
		return "", err
	}
	path := s.statePath(key)
	if touch(path) {
		return path, nil
	}
	// One build per shape, across the node's goroutines and the processes
	// sharing the root (the lock is per open file).
	unlock, err := network.LockFile(ctx, filepath.Join(s.opts.Dir, key+".lock"))
	if err != nil {
		return "", fmt.Errorf("wait for the VM template's build: %w", err)
	}
	defer unlock()
	if touch(path) { // another goroutine or process built it meanwhile
		return path, nil
	}
	// What a build of this shape killed midway left (its placeholder
	// disks, a partial state): nobody else builds it while we hold the lock.
	stale, _ := filepath.Glob(filepath.Join(s.opts.Dir, buildDirPrefix(key)+"*"))
	for _, dir := range stale {
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("remove a stale VM template build", "dir", dir, "err", err)
		}
	}
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	began := time.Now()
	if err := s.build(bctx, spec, key, path); err != nil {
		return "", fmt.Errorf("build the VM template %s: %w", key, err)
	}
	s.log.Info("VM template built", "key", key, "memoryMiB", spec.MemoryMiB, "took", time.Since(began))
	s.prune(key)
	return path, nil
}

// Discard removes the template of spec's shape: a machine failed to
// resume from it, and the next one builds it again.
func (s *Store) Discard(spec vm.Spec) error {
	key, err := s.Key(spec)
	if err != nil {
		return err
	}
	if err := os.Remove(s.statePath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard the VM template %s: %w", key, err)
	}
	return nil
}

// touch reports whether path exists and marks it used (prune keeps the
// most recently used).
func touch(path string) bool {
	now := time.Now()
	return os.Chtimes(path, now, now) == nil
}

// prune keeps the Max most recently used templates; keep is the one just
// built.
func (s *Store) prune(keep string) {
	states, _ := filepath.Glob(filepath.Join(s.opts.Dir, "*.state"))
	if len(states) <= s.opts.Max {
		return
	}
	type aged struct {
		path string
		used time.Time
	}
	var all []aged
	for _, p := range states {
		if fi, err := os.Stat(p); err == nil && filepath.Base(p) != keep+".state" {
			all = append(all, aged{p, fi.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b aged) int { return a.used.Compare(b.used) })
	for _, a := range all[:len(states)-s.opts.Max] {
		// A machine resuming it holds it open; the file goes with it.
		if err := os.Remove(a.path); err != nil {
			s.log.Warn("remove an old VM template", "path", a.path, "err", err)
		}
	}
}

// settlePoll paces the wait for the template guest's modules.
const settlePoll = 50 * time.Millisecond

// build boots a machine of spec's shape on placeholder disks and an
// unplugged cable, waits until its agent has loaded every module but the
// held drivers, and saves it to path.
func (s *Store) build(ctx context.Context, spec vm.Spec, key, path string) error {
	work, err := os.MkdirTemp(s.opts.Dir, buildDirPrefix(key))
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	t := spec
	t.ID = "tpl-" + key[:12]
	t.Cmdline = strings.TrimSpace(spec.Cmdline + " " + TemplateCmdline)
	t.ConsoleLog = filepath.Join(work, "console.log")
	t.Disks = nil
	for i, d := range spec.Disks {
		// The guest never opens them: virtio_blk is held.
		p := filepath.Join(work, fmt.Sprintf("disk%d.img", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(p, 1<<20); err != nil {
			return err
		}
		t.Disks = append(t.Disks, vm.Disk{Serial: d.Serial, Path: p, ReadOnly: d.ReadOnly, Discard: d.Discard})
	}
	t.NICs = nil
	for i, n := range spec.NICs {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		if err != nil {
			return fmt.Errorf("NIC placeholder: %w", err)
		}
		unix.CloseOnExec(fds[0]) // no SOCK_CLOEXEC on darwin
		unix.CloseOnExec(fds[1])
		// The far end stays open while the machine runs (virtio_net is
		// held: nothing is ever sent).
		far := os.NewFile(uintptr(fds[1]), "template-nic")
		defer far.Close()
		// Not the first machine's MAC: every resumed guest gives its NIC
		// its own (agent.TemplateGuest).
		mac := fmt.Sprintf("02:00:00:00:00:%02x", i+1)
		t.NICs = append(t.NICs, vm.NIC{MAC: mac, MTU: n.MTU, Attachment: vm.Attachment{
			Kind: vm.AttachSwitch, Socket: "template", File: os.NewFile(uintptr(fds[0]), "template-nic")}})
	}
	m, err := s.opts.Driver.Start(ctx, t, filepath.Join(work, "m"))
	if err != nil {
		return err
	}
	defer func() {
		_ = m.Kill()
		<-m.Done()
	}()
	saver, ok := m.(vm.Saver)
	if !ok {
		return fmt.Errorf("the %s driver cannot save machines", s.opts.Driver.Name())
	}
	if err := s.settle(ctx, m); err != nil {
		return fmt.Errorf("%w%s", err, consoleTail(t.ConsoleLog))
	}
	// Saved inside the work directory (Save's temporary file too), so a
	// build killed midway leaves nothing but that directory.
	saved := filepath.Join(work, "state")
	if err := saver.Save(ctx, saved); err != nil {
		return err
	}
	if err := os.Rename(saved, path); err != nil {
		return fmt.Errorf("keep the saved template: %w", err)
	}
	return nil
}

// buildDirPrefix names the work directories of a shape's builds; short, as
// QEMU's sockets live below them (108-byte sun_path).
func buildDirPrefix(key string) string { return "b" + key[:8] + "-" }

// settle waits until the template guest's agent answers and has loaded
// every module it loads before a Setup, then ends the session so the
// saved agent waits for a new host.
func (s *Store) settle(ctx context.Context, m vm.Machine) error {
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return err
	}
	sess := transport.Serve(port, nil)
	defer sess.Close()
	ac, err := client.Dial(ctx, sess.Open)
	if err != nil {
		return err
	}
	defer ac.Close()
	info, err := ac.WaitReady(ctx)
	for err == nil && !info.GetModulesDone() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the template guest's modules: %w (loaded %v)", ctx.Err(), info.GetModules())
		case <-time.After(settlePoll):
		}
		info, err = ac.WaitReady(ctx)
	}
	if err != nil {
		return fmt.Errorf("template guest: %w", err)
	}
	return nil
}

// consoleTail is the end of a failed template guest's console, for the
// error.
func consoleTail(path string) string {
	b, err := filetail.Last(path, 2048)
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\nconsole:\n" + string(b)
}
