package podworker

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPruneInstanceLogsKeepsCurrentAndPrevious(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"0.log", "0.log.20261207-010101", "1.log", "1.log.20261207-020202", "2.log", "3.log", "10.log", "termination-log", "x.log"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneInstanceLogs(dir, 3); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"10.log", "2.log", "3.log", "termination-log", "x.log"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if err := pruneInstanceLogs(filepath.Join(dir, "missing"), 3); err != nil {
		t.Fatalf("a container without logs yet: %v", err)
	}
}
