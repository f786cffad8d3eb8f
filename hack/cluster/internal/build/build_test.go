package build

import (
	"os"
	"path/filepath"
	"slices"
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

// Every main package under hack/cluster/cmd is built by exactly one step and
// is listed in Binaries (which `up`, `down` and the up-to-date check use).
func TestStepsBuildEveryCommand(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "..", "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	built := map[string]int{}
	for _, st := range steps {
		for _, p := range st.pkgs {
			built[filepath.Base(p)]++
		}
	}
	var cmds []string
	for _, e := range entries {
		cmds = append(cmds, e.Name())
		if built[e.Name()] != 1 {
			t.Errorf("cmd/%s is built by %d steps, want 1", e.Name(), built[e.Name()])
		}
	}
	slices.Sort(cmds)
	want := slices.Sorted(slices.Values(Binaries))
	if !slices.Equal(cmds, want) {
		t.Errorf("cmd/ holds %v, Binaries lists %v", cmds, want)
	}
}
