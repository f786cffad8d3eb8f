package build

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

func TestFingerprintTracksSourceAndToolchain(t *testing.T) {
	a := fstest.MapFS{"go.mod": {Data: []byte("module x")}, "cmd/etcd/main.go": {Data: []byte("package main")}}
	b := fstest.MapFS{"go.mod": {Data: []byte("module x")}, "cmd/etcd/main.go": {Data: []byte("package main // changed")}}
	fa, err := fingerprint(a, "go1.26.8 linux amd64")
	if err != nil {
		t.Fatal(err)
	}
	fa2, _ := fingerprint(a, "go1.26.8 linux amd64")
	fb, _ := fingerprint(b, "go1.26.8 linux amd64")
	fc, _ := fingerprint(a, "go1.27.0 linux amd64")
	if fa != fa2 {
		t.Error("fingerprint is not deterministic")
	}
	if fa == fb || fa == fc {
		t.Error("fingerprint ignores a source or toolchain change")
	}
}

func TestUnpackReplacesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := fstest.MapFS{"go.mod": {Data: []byte("module x")}, "cmd/etcd/main.go": {Data: []byte("package main")}}
	if err := unpack(src, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cmd", "etcd", "main.go")); err != nil || string(b) != "package main" {
		t.Errorf("unpacked main.go: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cmd", "stale")); err == nil {
		t.Error("stale source left behind: a removed command would still be built")
	}
}
