package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEmptyStateAfterHostCrash: state files are not fsynced, so a host
// crash can leave one empty. Such a directory is a dead machine that
// Connect reports as such and Delete removes.
func TestEmptyStateAfterHostCrash(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(dir); !errors.Is(err, ErrNoState) {
		t.Fatalf("readState of an empty state file: %v, want ErrNoState", err)
	}
	c, err := Connect(dir)
	if !errors.Is(err, ErrShimDead) || c == nil {
		t.Fatalf("Connect = %v, %v; want a client and ErrShimDead", c, err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory still there after Delete: %v", err)
	}
	// A state file that is not empty but garbled is not taken for a crash.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{garbled"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(dir); err == nil || errors.Is(err, ErrNoState) {
		t.Fatalf("readState of a garbled state file: %v, want a decode error", err)
	}
}
