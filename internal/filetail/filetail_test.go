package filetail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLast(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	if err := os.WriteFile(path, []byte(strings.Repeat("a", 100)+"the end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Last(path, 8); err != nil || string(got) != "the end\n" {
		t.Fatalf("Last(8) = %q, %v", got, err)
	}
	if got, err := Last(path, 1<<20); err != nil || len(got) != 108 {
		t.Fatalf("Last of more than the file = %d bytes, %v; want all 108", len(got), err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Last(path, 8); err != nil || len(got) != 0 {
		t.Fatalf("Last of an empty file = %q, %v", got, err)
	}
	if _, err := Last(filepath.Join(dir, "missing"), 8); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Last of a missing file: %v", err)
	}
}
