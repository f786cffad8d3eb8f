package guest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindWithoutBundleSaysHowToBuildOne(t *testing.T) {
	_, err := Find(t.TempDir())
	if !errors.Is(err, ErrNoBundle) || !strings.Contains(err.Error(), "make guest") {
		t.Fatalf("got %v, want ErrNoBundle mentioning make guest", err)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd.img", "floor-initrd.img"} {
		must(t, os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644))
	}
	b := Bundle{
		Arch: "amd64", KernelRelease: "6.1.0-56-cloud-amd64",
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		FloorInitrd: filepath.Join(dir, "floor-initrd.img"),
	}
	must(t, b.WriteManifest(dir))
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	must(t, err)
	if strings.Contains(string(raw), dir) {
		t.Fatalf("manifest stores absolute paths:\n%s", raw)
	}
	// The directory can move: paths resolve against where it is now.
	moved := filepath.Join(t.TempDir(), "moved")
	must(t, os.Rename(dir, moved))
	got, err := Find(moved)
	must(t, err)
	want := b
	want.Kernel, want.Initrd, want.FloorInitrd = filepath.Join(moved, "vmlinuz"), filepath.Join(moved, "initrd.img"), filepath.Join(moved, "floor-initrd.img")
	if got != want {
		t.Fatalf("Find = %+v, want %+v", got, want)
	}
	must(t, os.Remove(want.Initrd))
	if _, err := Find(moved); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("missing initrd: %v, want ErrNoBundle", err)
	}
}

func TestLocateLooksUnderRoot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "guest", "arm64")
	must(t, os.MkdirAll(dir, 0o755))
	for _, f := range []string{"Image", "initrd.img"} {
		must(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
	}
	must(t, Bundle{Arch: "arm64", Kernel: "Image", Initrd: "initrd.img", KernelRelease: "r"}.WriteManifest(dir))
	b, err := Locate(root, "arm64")
	must(t, err)
	if b.Kernel != filepath.Join(dir, "Image") {
		t.Fatalf("Locate found %+v", b)
	}
	if _, err := Locate(root, "amd64"); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("Locate amd64: %v, want ErrNoBundle", err)
	}
}

func TestWriteInitrdLayout(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("GNU cpio is needed to check the archive: apt-get install cpio (%v)", err)
	}
	root := fakeTree(t, nil, "virtio_ring.ko:", "virtio.ko:virtio_ring", "virtio_console.ko:virtio,virtio_ring")
	tree, err := OpenModuleTree(root)
	must(t, err)
	res, err := tree.Resolve([]Want{{Name: PortModule}})
	must(t, err)
	dir := t.TempDir()
	init := filepath.Join(dir, "agent")
	must(t, os.WriteFile(init, []byte("agent binary"), 0o755))
	img := filepath.Join(dir, "initrd.img")
	must(t, WriteInitrd(img, init, res.Order))

	out := filepath.Join(dir, "x")
	must(t, os.Mkdir(out, 0o755))
	cmd := exec.Command("sh", "-c", cpio+" -i -d --quiet --no-absolute-filenames -f dev/console < "+img)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	list, err := os.ReadFile(filepath.Join(out, "lib/vkav/modules.list"))
	must(t, err)
	if string(list) != "virtio_ring.ko\nvirtio.ko\nvirtio_console.ko\n" {
		t.Fatalf("modules.list:\n%s", list)
	}
	for _, f := range strings.Fields(string(list)) {
		if _, err := ReadModinfo(filepath.Join(out, "lib/vkav/modules", f)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(filepath.Join(out, "init"))
	must(t, err)
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("/init mode %v", st.Mode())
	}
}
