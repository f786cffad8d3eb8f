package guest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Want names one kernel module the guest should load.
type Want struct {
	Name string
	// Optional modules are left out when the kernel has no such module
	// (neither a .ko nor built in); required ones make Resolve fail.
	Optional bool
}

// PortModule is the last module the agent needs before it can open its
// console port; modules.list up to and including it is the port prefix
// that hack/floorinit loads.
const PortModule = "virtio_console"

// DefaultModules is what the guest agent loads, in this order of priority.
// The closure of the first two — everything between the agent and the host
// — comes first in modules.list so the agent can answer before the rest
// loads. Built-in modules (ext4, af_packet on Debian's cloud kernel) are
// skipped by Resolve.
var DefaultModules = []Want{
	{Name: "virtio_pci"},
	{Name: PortModule},
	{Name: "virtio_blk"},
	{Name: "virtio_net"},
	{Name: "overlay"},
	{Name: "virtiofs"},
	{Name: "fuse"},
	{Name: "vmw_vsock_virtio_transport", Optional: true},
	{Name: "af_packet", Optional: true},
	// Entropy for the guest's getrandom without waiting on jitter entropy.
	{Name: "virtio_rng", Optional: true},
	// ACPI power button, so QEMU's system_powerdown reaches the guest.
	{Name: "button", Optional: true},
	// /dev/input/event* for the power button's KEY_POWER events.
	{Name: "evdev", Optional: true},
	// The memory balloon: free page reporting gives the guest's free
	// memory back to the host under QEMU (vm/qemu), and vz's traditional
	// balloon is driven through it (vm/balloon). Optional: a kernel with
	// it built in (Kata's arm64 kernel) lists no module.
	{Name: "virtio_balloon", Optional: true},
}

// Module is one loadable module file and the modules it depends on.
type Module struct {
	Name    string   // canonical name, with '_' (e.g. "virtio_pci")
	Path    string   // absolute path of the .ko file
	Depends []string // canonical names from .modinfo "depends="
}

// ModuleTree indexes the modules of one kernel release, as unpacked from
// Debian's linux-image package: lib/modules/<release>/kernel/**.ko plus
// modules.builtin. The .deb ships no modules.dep (depmod writes it at
// install time), so dependencies come from each module's .modinfo section.
type ModuleTree struct {
	Root    string
	files   map[string]string // canonical name → .ko path
	builtin map[string]bool
	infos   map[string]Module
}

// OpenModuleTree indexes root, a lib/modules/<release> directory.
func OpenModuleTree(root string) (*ModuleTree, error) {
	t := &ModuleTree{Root: root, files: map[string]string{}, builtin: map[string]bool{}, infos: map[string]Module{}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := d.Name()
		switch {
		case d.IsDir():
			return nil
		case strings.HasSuffix(base, ".ko"):
			t.files[canonical(strings.TrimSuffix(base, ".ko"))] = p
		case strings.HasSuffix(base, ".ko.xz"), strings.HasSuffix(base, ".ko.zst"), strings.HasSuffix(base, ".ko.gz"):
			return fmt.Errorf("%s is compressed; only uncompressed modules are supported (finit_module without decompression)", p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules under %s: %w", root, err)
	}
	if err := t.readBuiltin(filepath.Join(root, "modules.builtin")); err != nil {
		return nil, err
	}
	return t, nil
}

// readBuiltin reads "kernel/net/packet/af_packet.ko" style lines; a missing
// file means no module is known to be built in.
func (t *ModuleTree) readBuiltin(p string) error {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read builtin module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		base := filepath.Base(strings.TrimSpace(sc.Text()))
		if base != "." && base != "" {
			t.builtin[canonical(strings.TrimSuffix(base, ".ko"))] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// Resolved is the result of Resolve.
type Resolved struct {
	// Order lists modules so every module follows its dependencies; the
	// closure of earlier wants precedes that of later ones.
	Order []Module
	// Builtin and Absent name wanted modules left out because the kernel
	// has them built in, or (optional ones) does not have them at all.
	Builtin, Absent []string
}

// Resolve computes the dependency closure of wanted and a load order.
func (t *ModuleTree) Resolve(wanted []Want) (Resolved, error) {
	var res Resolved
	state := map[string]int{} // 0 unvisited, 1 on the DFS stack, 2 placed
	var stack []string
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			cycle := append(stack[indexOf(stack, name):], name)
			return fmt.Errorf("module dependency cycle: %s", strings.Join(cycle, " -> "))
		}
		m, err := t.module(name)
		if err != nil {
			if neededBy != "" {
				return fmt.Errorf("module %s (needed by %s): %w", name, neededBy, err)
			}
			return err
		}
		state[name] = 1
		stack = append(stack, name)
		for _, dep := range m.Depends {
			if t.builtin[dep] && t.files[dep] == "" {
				continue
			}
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = 2
		res.Order = append(res.Order, m)
		return nil
	}
	for _, w := range wanted {
		name := canonical(w.Name)
		if t.files[name] == "" {
			switch {
			case t.builtin[name]:
				res.Builtin = append(res.Builtin, name)
				continue
			case w.Optional:
				res.Absent = append(res.Absent, name)
				continue
			}
		}
		if err := visit(name, ""); err != nil {
			return Resolved{}, fmt.Errorf("resolve kernel modules under %s: %w", t.Root, err)
		}
	}
	return res, nil
}

func (t *ModuleTree) module(name string) (Module, error) {
	if m, ok := t.infos[name]; ok {
		return m, nil
	}
	p := t.files[name]
	if p == "" {
		return Module{}, fmt.Errorf("no %s.ko in the tree and not built in (modules.builtin)", name)
	}
	info, err := ReadModinfo(p)
	if err != nil {
		return Module{}, err
	}
	m := Module{Name: name, Path: p}
	if n := info["name"]; n != "" && canonical(n) != name {
		return Module{}, fmt.Errorf("%s declares name %q, not %q", p, n, name)
	}
	for _, d := range strings.Split(info["depends"], ",") {
		if d = strings.TrimSpace(d); d != "" {
			m.Depends = append(m.Depends, canonical(d))
		}
	}
	t.infos[name] = m
	return m, nil
}

// ReadModinfo returns the key=value pairs of a module's .modinfo section
// (NUL-separated strings; a repeated key keeps its first value).
func ReadModinfo(path string) (map[string]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read modinfo of %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("read modinfo of %s: no .modinfo section (not a kernel module?)", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read modinfo of %s: %w", path, err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		if _, dup := info[k]; !dup {
			info[k] = v
		}
	}
	return info, nil
}

// canonical spells a module name as the kernel does: '-' and '_' are the
// same in module names, the kernel reports '_'.
func canonical(name string) string { return strings.ReplaceAll(name, "-", "_") }

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return 0
}
