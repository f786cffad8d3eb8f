package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

// The README's "Measured" table is what bench/results.json generates.
func TestREADMEMatchesResults(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	if err := run(filepath.Join(root, "bench", "results.json"), filepath.Join(root, "README.md"), true); err != nil {
		t.Fatal(err)
	}
}

func TestWriteReplacesOnlyTheTable(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	before := "# x\n\n## Measured\n\nprose\n\n" + beginMarker + "| old |\n" + endMarker + "\nafter\n"
	if err := os.WriteFile(readme, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &results.Record{}
	if _, err := rec.Add(results.Figure{ID: "churn.total", Figure: "churn", Value: 3, Unit: "s", Command: "make bench", Machine: "m", Date: "2026-12-07"}); err != nil {
		t.Fatal(err)
	}
	resultsPath := filepath.Join(dir, "results.json")
	if err := rec.Save(resultsPath); err != nil {
		t.Fatal(err)
	}
	if err := run(resultsPath, readme, true); err == nil {
		t.Fatal("-check passed on a README whose table differs from the record")
	}
	if err := run(resultsPath, readme, false); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(readme)
	want := "# x\n\n## Measured\n\nprose\n\n" + beginMarker + rec.Markdown() + endMarker + "\nafter\n"
	if string(after) != want {
		t.Errorf("README after:\n%s\nwant:\n%s", after, want)
	}
	if err := run(resultsPath, readme, true); err != nil {
		t.Errorf("-check after writing: %v", err)
	}
	if _, err := replaceTable([]byte("no markers"), ""); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("README without markers: %v", err)
	}
}
