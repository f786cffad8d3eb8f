package main

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// tempModule writes a module that depends on exactly what this repository
// depends on (its go.mod and go.sum, renamed), so loading it needs nothing
// beyond the module cache this repository's own build fills. files maps
// names to contents.
func tempModule(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	goMod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatalf("read the repository's go.mod: %v", err)
	}
	goSum, err := os.ReadFile(filepath.Join("..", "..", "go.sum"))
	if err != nil {
		t.Fatalf("read the repository's go.sum: %v", err)
	}
	renamed := regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(goMod, []byte("module example.com/vzcall"))
	files["go.mod"] = string(renamed)
	files["go.sum"] = string(goSum)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// callVZ is a darwin-only file calling vz; body is the function body.
func callVZ(body string) string {
	return `//go:build darwin

package vzcall

import "github.com/Code-Hex/vz/v3"

func Attach(path string) (vz.StorageDeviceConfiguration, error) {
` + body + `
}
`
}

const correctCall = `	a, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(path, true,
		vz.DiskImageCachingModeCached, vz.DiskImageSynchronizationModeNone)
	if err != nil {
		return nil, err
	}
	return vz.NewVirtioBlockDeviceConfiguration(a)`

// Linux-only code in this file stands for every package of the project: a
// darwin build must not see it.
const linuxFile = `//go:build linux

package vzcall

import "syscall"

var _ = syscall.SOCK_CLOEXEC
`

func TestCheckPassesOnCorrectVZCall(t *testing.T) {
	testenv.Needs(t, "minutes of type-checking vz's cgo with go/packages (make check-darwin)")
	dir := tempModule(t, map[string]string{
		"call_darwin.go": callVZ(correctCall),
		"other_linux.go": linuxFile,
	})
	res, err := Check(context.Background(), Options{Dir: dir}, "./...")
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(res.Problems) != 0 {
		t.Fatalf("Check found problems in a correct call: %v", res.Problems)
	}
	if res.Packages != 1 {
		t.Errorf("checked %d packages of the module, want 1", res.Packages)
	}
	// The call was checked against vz itself, loaded for darwin (on Linux
	// its cgo cannot run, and those errors are the ignored ones).
	if !slices.Contains(res.CgoPackages, "github.com/Code-Hex/vz/v3") {
		t.Errorf("vz was not loaded; cgo packages: %v", res.CgoPackages)
	}
	if runtime.GOOS != "darwin" && len(res.Ignored) == 0 {
		t.Errorf("no cgo errors ignored off macOS: vz's cgo cannot have been processed")
	}
}

func TestCheckFailsOnWrongVZCall(t *testing.T) {
	testenv.Needs(t, "minutes of type-checking vz's cgo with go/packages (make check-darwin)")
	cases := []struct {
		name, body string
		want       []string // substrings of one problem
	}{
		{
			name: "too many arguments",
			body: `	a, err := vz.NewDiskImageStorageDeviceAttachment(path, true, vz.DiskImageCachingModeCached)
	if err != nil {
		return nil, err
	}
	return vz.NewVirtioBlockDeviceConfiguration(a)`,
			want: []string{"call_darwin.go:8:", "too many arguments in call to vz.NewDiskImageStorageDeviceAttachment"},
		},
		{
			name: "wrong argument type",
			body: `	a, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(path, true,
		vz.DiskImageSynchronizationModeFsync, vz.DiskImageSynchronizationModeFsync)
	if err != nil {
		return nil, err
	}
	return vz.NewVirtioBlockDeviceConfiguration(a)`,
			want: []string{"call_darwin.go:9:", "cannot use vz.DiskImageSynchronizationModeFsync", "vz.DiskImageCachingMode"},
		},
		{
			name: "function that does not exist",
			body: `	return vz.NewVirtioBlockDeviceConfigurationFromPath(path)`,
			want: []string{"call_darwin.go:8:", "undefined: vz.NewVirtioBlockDeviceConfigurationFromPath"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempModule(t, map[string]string{"call_darwin.go": callVZ(tc.body)})
			res, err := Check(context.Background(), Options{Dir: dir}, "./...")
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !hasProblem(res.Problems, tc.want) {
				t.Fatalf("no problem mentions %q; got %v", tc.want, res.Problems)
			}
		})
	}
}

// A darwin build also breaks on non-vz code that only exists on Linux.
func TestCheckFailsOnLinuxOnlyCodeInDarwinBuild(t *testing.T) {
	testenv.Needs(t, "minutes of type-checking vz's cgo with go/packages (make check-darwin)")
	dir := tempModule(t, map[string]string{
		"call_darwin.go": callVZ(correctCall),
		"shared.go":      "package vzcall\n\nimport \"syscall\"\n\nvar _ = syscall.SOCK_CLOEXEC\n",
	})
	res, err := Check(context.Background(), Options{Dir: dir}, "./...")
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !hasProblem(res.Problems, []string{"shared.go:5:", "undefined: syscall.SOCK_CLOEXEC"}) {
		t.Fatalf("Linux-only symbol not reported; got %v", res.Problems)
	}
	if len(res.Problems) != 1 {
		t.Errorf("want the one problem once, got %v", res.Problems)
	}
}

func hasProblem(problems []Problem, want []string) bool {
	for _, p := range problems {
		s := p.String()
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all {
			return true
		}
	}
	return false
}

func TestSplitCompilerOutput(t *testing.T) {
	in := []packages.Error{
		{Pos: "/m/a.go:1:2", Msg: "plain"},
		{Pos: "-", Msg: "# example.com/p\np/a.go:87:78: undefined: syscall.X\np/b.go:3:1: x: y: z\nnot a position"},
	}
	got := splitCompilerOutput(in)
	want := []packages.Error{
		{Pos: "/m/a.go:1:2", Msg: "plain"},
		{Pos: "p/a.go:87:78", Msg: "undefined: syscall.X"},
		{Pos: "p/b.go:3:1", Msg: "x: y: z"},
		{Pos: "-", Msg: "not a position"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i].Pos != want[i].Pos || got[i].Msg != want[i].Msg {
			t.Errorf("error %d: got %q %q, want %q %q", i, got[i].Pos, got[i].Msg, want[i].Pos, want[i].Msg)
		}
	}
}

// Files behind a build tag are checked only when the tag is given, as
// `make check-darwin` does for the vz boot tests.
func TestCheckHonoursTags(t *testing.T) {
	testenv.Needs(t, "minutes of type-checking vz's cgo with go/packages (make check-darwin)")
	tagged := "//go:build darwin && vz_integration\n\npackage vzcall\n\nimport \"github.com/Code-Hex/vz/v3\"\n\nvar _ = vz.NoSuchFunction()\n"
	dir := tempModule(t, map[string]string{
		"call_darwin.go": callVZ(correctCall),
		"boot_darwin.go": tagged,
	})
	res, err := Check(context.Background(), Options{Dir: dir}, "./...")
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("without the tag: problems %v, err %v; want none", res.Problems, err)
	}
	res, err = Check(context.Background(), Options{Dir: dir, Tags: []string{"vz_integration"}}, "./...")
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(res.Problems, []string{"boot_darwin.go:7:", "undefined: vz.NoSuchFunction"}) {
		t.Fatalf("with the tag: %v, want the undefined vz function reported", res.Problems)
	}
}
