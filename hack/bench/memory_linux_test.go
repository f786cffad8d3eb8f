package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/guest/initrd"
)

func TestInitrdWithoutModuleReplacesTheList(t *testing.T) {
	dir := t.TempDir()
	list := "kernel/virtio_ring.ko\nkernel/virtio_console.ko\nkernel/virtio_balloon.ko\nkernel/evdev.ko\n"
	var b bytes.Buffer
	w := initrd.NewWriter(&b)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.File("init", 0o755, 3, strings.NewReader("abc")))
	must(w.File(agentModulesList, 0o644, int64(len(list)), strings.NewReader(list)))
	must(w.Close())
	src, dst := filepath.Join(dir, "in.img"), filepath.Join(dir, "out.img")
	must(os.WriteFile(src, b.Bytes(), 0o644))
	must(initrdWithoutModule(src, dst, "virtio_balloon"))
	out, err := os.ReadFile(dst)
	must(err)
	if !bytes.HasPrefix(out, b.Bytes()) {
		t.Fatal("the original archive is not kept first")
	}
	second := out[(len(b.Bytes())+3)&^3:]
	got, err := cpioFile(second, agentModulesList)
	must(err)
	if want := "kernel/virtio_ring.ko\nkernel/virtio_console.ko\nkernel/evdev.ko\n"; string(got) != want {
		t.Errorf("second archive's list %q, want %q", got, want)
	}
	if err := initrdWithoutModule(dst, filepath.Join(dir, "again.img"), "nonexistent"); err == nil {
		t.Error("a module the list does not have was accepted")
	}
}
