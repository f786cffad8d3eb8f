package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestDarwinGlueSize holds the project to its bound: the code that builds
// only for macOS, which no Linux run executes, stays under
// MaxGlueCodeLines. The count is printed for reports.
func TestDarwinGlueSize(t *testing.T) {
	files, err := DarwinGlue("../..")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := printGlue(&out, files)
	t.Logf("\n%s", out.String())
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	// The count must see the vz driver and the other darwin-only files
	// (by name and by constraint), and nothing that also builds elsewhere.
	for _, p := range []string{"vm/vz/configure_darwin.go", "vm/vz/rosetta_darwin_arm64.go", "internal/hostinfo/darwin.go"} {
		if !slices.Contains(paths, p) {
			t.Errorf("%s is darwin-only but not counted", p)
		}
	}
	for _, p := range []string{"vm/vz/stub_other.go", "internal/hostinfo/disk_unix.go", "vm/vz/translate.go"} {
		if slices.Contains(paths, p) {
			t.Errorf("%s builds elsewhere too but is counted", p)
		}
	}
	if code > MaxGlueCodeLines {
		t.Errorf("%d lines of darwin-only code, over %d: move what is platform-neutral out of the darwin files (and test it on Linux)", code, MaxGlueCodeLines)
	}
}

func TestDarwinOnly(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      bool
	}{
		{"a_darwin.go", "package a\n", true},
		{"a_darwin_arm64.go", "package a\n", true},
		{"a_ios.go", "package a\n", false}, // ios is not a Mac, but counts as darwin: never other-only
		{"a.go", "//go:build darwin && !no_vz\n\npackage a\n", true},
		{"a.go", "//go:build darwin\n// +build darwin\n\npackage a\n", true},
		{"a.go", "//go:build darwin || linux\n\npackage a\n", false},
		{"a.go", "//go:build !darwin || no_vz\n\npackage a\n", false},
		{"a.go", "//go:build unix\n\npackage a\n", false},
		{"a.go", "package a\n", false},
		{"a_linux.go", "package a\n", false},
		{"a_arm64.go", "//go:build darwin\n\npackage a\n", true},
		{"a_test_helper.go", "//go:build darwin\n\npackage a\n", true},
		// A constraint after the package clause is not one.
		{"a.go", "package a\n\n//go:build darwin\n", false},
	} {
		got, err := darwinOnly(c.name, []byte(c.src))
		if err != nil {
			t.Fatalf("%s %q: %v", c.name, c.src, err)
		}
		if got != c.want {
			t.Errorf("darwinOnly(%s, %q) = %v, want %v", c.name, c.src, got, c.want)
		}
	}
}

func TestCountLines(t *testing.T) {
	src := strings.Join([]string{
		"//go:build darwin",
		"",
		"// Package a is a test.",
		"package a",
		"",
		"/* a block",
		"   comment */",
		"var s = `raw",
		"string`",
		"",
		"func f() int { // trailing comment",
		"\treturn 1",
		"}",
	}, "\n") + "\n"
	lines, code := countLines([]byte(src))
	if lines != 13 || code != 6 {
		t.Errorf("countLines = %d lines, %d code; want 13, 6", lines, code)
	}
}
