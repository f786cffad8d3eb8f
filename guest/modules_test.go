package guest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFakeModule writes a minimal ELF64 relocatable file whose .modinfo
// section holds the given key=value strings, as a kernel module's does.
func writeFakeModule(t *testing.T, path string, modinfo ...string) {
	t.Helper()
	var info bytes.Buffer
	for _, kv := range modinfo {
		info.WriteString(kv)
		info.WriteByte(0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehdrSize, shdrSize = 64, 64
	infoOff := uint64(ehdrSize)
	strOff := infoOff + uint64(info.Len())
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7

	var out bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehdrSize, Shentsize: shdrSize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	must(t, binary.Write(&out, binary.LittleEndian, hdr))
	out.Write(info.Bytes())
	out.Write(shstr)
	out.Write(make([]byte, shOff-uint64(out.Len())))
	sections := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: infoOff, Size: uint64(info.Len()), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	for _, s := range sections {
		must(t, binary.Write(&out, binary.LittleEndian, s))
	}
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, out.Bytes(), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeTree writes modules given as "file: dep1,dep2" and a modules.builtin.
func fakeTree(t *testing.T, builtin []string, mods ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, m := range mods {
		file, deps, _ := strings.Cut(m, ":")
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
		writeFakeModule(t, filepath.Join(root, "kernel", file),
			"license=GPL", "depends="+strings.TrimSpace(deps), "name="+name, "vermagic=6.1.0 SMP")
	}
	must(t, os.WriteFile(filepath.Join(root, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644))
	return root
}

func names(mods []Module) string {
	var s []string
	for _, m := range mods {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

func TestResolveOrdersDependenciesFirstAndPortPrefixFirst(t *testing.T) {
	root := fakeTree(t, []string{"kernel/net/packet/af_packet.ko", "kernel/fs/ext4/ext4.ko"},
		"drivers/virtio/virtio_ring.ko:",
		"drivers/virtio/virtio.ko:virtio_ring",
		"drivers/virtio/virtio_pci_legacy_dev.ko:",
		"drivers/virtio/virtio_pci_modern_dev.ko:",
		"drivers/virtio/virtio_pci.ko:virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio",
		"drivers/char/virtio_console.ko:virtio,virtio_ring",
		"net/core/failover.ko:",
		"drivers/net/net_failover.ko:failover",
		"drivers/net/virtio_net.ko:virtio_ring,virtio,net_failover",
		"drivers/char/hw_random/virtio-rng.ko:virtio,virtio_ring",
		"fs/overlayfs/overlay.ko:",
	)
	tree, err := OpenModuleTree(root)
	must(t, err)
	res, err := tree.Resolve([]Want{
		{Name: "virtio_pci"}, {Name: "virtio_console"}, {Name: "virtio_net"}, {Name: "virtio-rng"},
		{Name: "overlay"}, {Name: "af_packet", Optional: true}, {Name: "ext4"}, {Name: "9p", Optional: true},
	})
	must(t, err)
	want := "virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_console " +
		"failover net_failover virtio_net virtio_rng overlay"
	if got := names(res.Order); got != want {
		t.Fatalf("order:\n got %s\nwant %s", got, want)
	}
	if strings.Join(res.Builtin, " ") != "af_packet ext4" || strings.Join(res.Absent, " ") != "9p" {
		t.Fatalf("builtin %v, absent %v", res.Builtin, res.Absent)
	}
	// A dash in the file name maps to the kernel's underscore spelling.
	if p := res.Order[9].Path; filepath.Base(p) != "virtio-rng.ko" {
		t.Fatalf("virtio_rng path %s", p)
	}
}

func TestResolveReportsCycle(t *testing.T) {
	root := fakeTree(t, nil, "a.ko:b", "b.ko:c", "c.ko:a")
	tree, err := OpenModuleTree(root)
	must(t, err)
	_, err = tree.Resolve([]Want{{Name: "a"}})
	if err == nil || !strings.Contains(err.Error(), "cycle: a -> b -> c -> a") {
		t.Fatalf("got %v, want a cycle a -> b -> c -> a", err)
	}
}

func TestResolveReportsMissingDependency(t *testing.T) {
	root := fakeTree(t, nil, "virtio_console.ko:virtio,virtio_ring", "virtio_ring.ko:")
	tree, err := OpenModuleTree(root)
	must(t, err)
	_, err = tree.Resolve([]Want{{Name: "virtio_console"}})
	if err == nil || !strings.Contains(err.Error(), "module virtio (needed by virtio_console)") {
		t.Fatalf("got %v, want a missing virtio needed by virtio_console", err)
	}
	_, err = tree.Resolve([]Want{{Name: "nosuch"}})
	if err == nil || !strings.Contains(err.Error(), "no nosuch.ko") {
		t.Fatalf("a missing required module: %v", err)
	}
}

func TestOpenModuleTreeRefusesCompressedModules(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "virtio.ko.xz"), []byte("x"), 0o644))
	if _, err := OpenModuleTree(root); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("got %v, want a compressed-module error", err)
	}
}

func TestReadModinfoRejectsNonModule(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.ko")
	must(t, os.WriteFile(p, []byte("not an elf file"), 0o644))
	if _, err := ReadModinfo(p); err == nil {
		t.Fatal("a non-ELF file was read as a module")
	}
}
