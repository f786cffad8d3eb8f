package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinaryFromEnv(t *testing.T) {
	bin := filepath.Join(t.TempDir(), BinaryName)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinaryEnv, bin)
	got, err := FindBinary()
	if err != nil || got != bin {
		t.Fatalf("FindBinary with $%s=%s: %q, %v", BinaryEnv, bin, got, err)
	}

	notExec := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{notExec, filepath.Join(t.TempDir(), "absent")} {
		t.Setenv(BinaryEnv, p)
		if got, err := FindBinary(); err == nil || !strings.Contains(err.Error(), BinaryEnv) {
			t.Errorf("FindBinary with $%s=%s: %q, %v; want an error naming $%s", BinaryEnv, p, got, err, BinaryEnv)
		}
	}
}

// The test binary has no vk-applevm-shim beside it: Launch fails before it
// writes anything, saying how to build the shim.
func TestLaunchWithoutShimBinary(t *testing.T) {
	t.Setenv(BinaryEnv, "")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(exe), BinaryName)); err == nil {
		t.Fatalf("%s exists next to the test binary; this test needs it absent", BinaryName)
	}
	dir := filepath.Join(shortTempDir(t), "vm")
	_, err = Launch(context.Background(), dir, testConfig(dir, ""))
	if err == nil || !strings.Contains(err.Error(), "make build") || !strings.Contains(err.Error(), "./cmd/vk-applevm-shim") {
		t.Fatalf("Launch without a shim binary: %v; want an error saying how to build it", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Launch without a shim binary left %s behind (stat: %v)", dir, err)
	}
}
