package vmtemplate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// nameOnly is a driver that only has a name: Key needs nothing else.
type nameOnly struct{ vm.Driver }

func (nameOnly) Name() string { return "qemu" }

func testSpec(t *testing.T, dir string) vm.Spec {
	t.Helper()
	for _, f := range []string{"vmlinuz", "initrd.img", "qemu"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return vm.Spec{
		ID: "aaaaaaaaaaaa", Arch: "amd64", Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		CPUs: 1, MemoryMiB: 640, Ports: []string{vm.AgentPort, vm.LogPort}, ConsoleLog: filepath.Join(dir, "console.log"),
		Disks: []vm.Disk{{Serial: vm.DiskRootfs, Path: "/images/a.ext4", ReadOnly: true}, {Serial: vm.DiskScratch, Path: "/vms/a/scratch.ext4"}},
		NICs:  []vm.NIC{{MAC: "02:00:00:00:00:aa", Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/run/sw"}}},
	}
}

// Machines differing only in their host ends share a template; anything
// the saved state depends on makes another.
func TestKeyIsTheShape(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(dir, "templates"), Driver: nameOnly{}, Stamps: []string{filepath.Join(dir, "qemu")}})
	if err != nil {
		t.Fatal(err)
	}
	base := testSpec(t, dir)
	key := func(spec vm.Spec) string {
		t.Helper()
		k, err := s.Key(spec)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key(base)

	same := base
	same.ID, same.ConsoleLog = "bbbbbbbbbbbb", "/elsewhere/console.log"
	same.Disks = []vm.Disk{{Serial: vm.DiskRootfs, Path: "/images/b.ext4", ReadOnly: true}, {Serial: vm.DiskScratch, Path: "/vms/b/scratch.ext4"}}
	same.NICs = []vm.NIC{{MAC: "02:00:00:00:00:bb", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "tap1"}}}
	if key(same) != k0 {
		t.Error("machines differing only in disk images, MACs, attachments and logs have different keys")
	}

	for name, change := range map[string]func(*vm.Spec){
		"memory":  func(s *vm.Spec) { s.MemoryMiB = 1152 },
		"cpus":    func(s *vm.Spec) { s.CPUs = 2 },
		"cmdline": func(s *vm.Spec) { s.Cmdline = "quiet" },
		"a disk":  func(s *vm.Spec) { s.Disks = append(s.Disks, vm.Disk{Serial: "vkav-vol0", Path: "/v", Discard: true}) },
		"no NIC":  func(s *vm.Spec) { s.NICs = nil },
		"NIC MTU": func(s *vm.Spec) { s.NICs = []vm.NIC{{MAC: "02:00:00:00:00:aa", MTU: 9000}} },
		"ports":   func(s *vm.Spec) { s.Ports = s.Ports[:1] },
		"read-only": func(s *vm.Spec) {
			s.Disks = []vm.Disk{{Serial: vm.DiskRootfs, Path: "/a"}, {Serial: vm.DiskScratch, Path: "/b"}}
		},
	} {
		spec := base
		spec.Disks = append([]vm.Disk(nil), base.Disks...)
		change(&spec)
		if key(spec) == k0 {
			t.Errorf("a machine with another %s has the same key", name)
		}
	}
	// Another accelerator is another shape.
	kvm, err := New(Options{Dir: filepath.Join(dir, "templates"), Driver: nameOnly{}, Stamps: []string{filepath.Join(dir, "qemu")}, Variant: "kvm"})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := kvm.Key(base); err != nil || k == k0 {
		t.Errorf("a store for KVM machines has the key of TCG ones (%v)", err)
	}
	// A rebuilt initrd or QEMU binary (same path) is another shape.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(dir, "qemu"), later, later); err != nil {
		t.Fatal(err)
	}
	if key(base) == k0 {
		t.Error("a rebuilt QEMU binary keeps the key")
	}
}

func TestEligible(t *testing.T) {
	spec := testSpec(t, t.TempDir())
	if err := Eligible(spec); err != nil {
		t.Fatalf("a plain container machine: %v", err)
	}
	for name, change := range map[string]func(*vm.Spec){
		"shares":  func(s *vm.Spec) { s.Shares = []vm.Share{{Tag: "vkav-share0", HostPath: "/x"}} },
		"rosetta": func(s *vm.Spec) { s.Rosetta = true },
		"restore": func(s *vm.Spec) { s.RestoreFrom = "/t.state" },
	} {
		s := spec
		change(&s)
		if err := Eligible(s); !errors.Is(err, ErrNotEligible) {
			t.Errorf("%s: Eligible = %v, want ErrNotEligible", name, err)
		}
	}
}

// A build killed midway (its work directory left, with a partial state)
// is cleaned up by the next build of that shape, and only of that shape.
func TestStaleBuildsOfTheShapeGo(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: filepath.Join(dir, "templates"), Driver: failingDriver{}})
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, dir)
	key, err := s.Key(spec)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(s.opts.Dir, buildDirPrefix(key)+"123")
	other := filepath.Join(s.opts.Dir, buildDirPrefix("ffffffffffff")+"456")
	for _, d := range []string{stale, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "state"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(context.Background(), spec); !errors.Is(err, errNoBoot) {
		t.Fatalf("Get = %v, want the driver's failure", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale build of the shape is still there (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another shape's build was removed: %v", err)
	}
	// Build directories only: a key's lock file may start with a "b" too.
	if left, _ := filepath.Glob(filepath.Join(s.opts.Dir, "b????????-*")); len(left) != 1 {
		t.Errorf("build directories left: %v, want only the other shape's", left)
	}
}

var errNoBoot = errors.New("no machines here")

// failingDriver names itself qemu and starts nothing.
type failingDriver struct{ vm.Driver }

func (failingDriver) Name() string { return "qemu" }
func (failingDriver) Start(context.Context, vm.Spec, string) (vm.Machine, error) {
	return nil, errNoBoot
}

// The store keeps the most recently used templates and the one just built.
func TestPruneKeepsTheMostRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir, Driver: nameOnly{}, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	for i, key := range []string{"built", "a", "b", "c", "d"} {
		p := s.statePath(key)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		used := base.Add(time.Duration(i) * time.Minute) // "built" is the oldest by mtime
		if err := os.Chtimes(p, used, used); err != nil {
			t.Fatal(err)
		}
	}
	s.prune("built")
	for key, want := range map[string]bool{"built": true, "a": false, "b": false, "c": true, "d": true} {
		_, err := os.Stat(s.statePath(key))
		if kept := err == nil; kept != want {
			t.Errorf("template %s kept=%v, want %v", key, kept, want)
		}
	}
}
