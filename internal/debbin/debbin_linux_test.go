package debbin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A package built by Debian's own dpkg-deb (data.tar.xz, GNU ar layout)
// gives up its file.
func TestFetchFromDpkgDebPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatalf("dpkg-deb not found (%v): apt-get install dpkg", err)
	}
	tree := t.TempDir()
	for name, body := range map[string]string{
		"DEBIAN/control": "Package: vkav-test\nVersion: 1.0\nArchitecture: arm64\nMaintainer: t <t@example.org>\nDescription: test\n",
		"bin/busybox":    "pretend this is busybox\n",
	} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(t.TempDir(), "vkav-test.deb")
	if out, err := exec.Command("dpkg-deb", "-Zxz", "--root-owner-group", "--build", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v: %s", err, out)
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := serve(t, data)
	dst := filepath.Join(t.TempDir(), "busybox")
	if err := Fetch(context.Background(), nil, Package{URL: url, SHA256: digest(data), Member: "bin/busybox"}, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "pretend this is busybox\n" {
		t.Fatalf("extracted %q", got)
	}
}
