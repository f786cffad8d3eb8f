package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLookPathResolvesInsideTheRoot(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"opt/tool/run": "#!/bin/sh\n", "bin/data": "x", "work/rel": "#!/bin/sh\n"})
	for _, f := range []string{"opt/tool/run", "work/rel"} {
		os.Chmod(filepath.Join(root, f), 0o755)
	}
	os.MkdirAll(filepath.Join(root, "bin", "dir"), 0o755)
	// Absolute links resolve against the container's root, not the agent's.
	os.Symlink("/opt/tool/run", filepath.Join(root, "bin", "inside"))
	os.Symlink("/usr/bin/env", filepath.Join(root, "bin", "hostonly")) // exists on the host only
	os.Symlink("../../../../../../opt/tool/run", filepath.Join(root, "bin", "dotdot"))

	for _, tc := range []struct {
		file, path string
		want       string
		err        error
	}{
		{"inside", "/bin", "/bin/inside", nil},
		{"dotdot", "/bin", "/bin/dotdot", nil},
		{"hostonly", "/bin", "", ErrExecutableNotFound},
		{"data", "/bin", "", ErrNotExecutable},
		{"dir", "/bin", "", ErrIsDirectory},
		{"data", "/bin:/opt/tool", "", ErrNotExecutable},
		{"run", "/bin:/opt/tool", "/opt/tool/run", nil},
		{"./rel", "/bin", "/work/rel", nil},
		{"/opt/tool/missing", "/bin", "", ErrExecutableNotFound},
		{"rel", "work", "/work/rel", nil}, // relative PATH entry, cwd /
	} {
		got, err := lookPathInRoot(root, tc.file, tc.path, map[bool]string{true: "/work", false: "/"}[tc.file == "./rel"])
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s in %s: got %q, %v; want %q, %v", tc.file, tc.path, got, err, tc.want, tc.err)
		}
	}
}

func TestMkdirAllInRootStaysInside(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(root, "escape"))
	// The link points at a path the root does not have: an error, and
	// nothing created outside.
	if err := mkdirAllInRoot(root, "/escape/a/b", 0o755); err == nil {
		t.Fatal("mkdir through a dangling link succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created outside the root: %v", entries)
	}
	// A link within the root is followed within it.
	os.Mkdir(filepath.Join(root, "real"), 0o755)
	os.Symlink("/real", filepath.Join(root, "data"))
	if err := mkdirAllInRoot(root, "/data/x/y", 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "real", "x", "y")); err != nil || !st.IsDir() {
		t.Fatalf("not created through the link: %v", err)
	}
}
