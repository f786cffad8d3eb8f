package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

func TestMeasuredRowsAreRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	old := &results.Record{}
	if _, err := old.Add(results.Figure{ID: "boot.ratio", Figure: "boot", Value: 1.04, Unit: "×", Command: "make bench", Date: "2026-11-29"}); err != nil {
		t.Fatal(err)
	}
	if err := old.Save(path); err != nil {
		t.Fatal(err)
	}
	churn := measured(results.Figure{ID: "churn.total", Figure: "100 pods", Value: 3.2, Unit: "s",
		Reference: &results.Reference{Name: "mock", Value: 3.6}, Ratio: 3.6 / 3.2, Target: results.RatioAtLeast(1)})
	if churn.Verdict != pass || !strings.Contains(churn.Value, "3.2 s (mock: 3.6 s; 1.12×)") {
		t.Errorf("row %+v", churn)
	}
	broken := measured(results.Figure{ID: "Bad ID", Figure: "broken", Value: 1, Unit: "s", Target: results.AtMost(2)})
	if broken.Verdict != fail || broken.figure != nil {
		t.Errorf("an invalid figure gave row %+v; want a missing one", broken)
	}
	n, err := recordResults(path, []section{{Title: "churn", Rows: []row{churn, broken, info("plain", "1")}}})
	if err != nil || n != 1 {
		t.Fatalf("recordResults: %d, %v; want 1 figure", n, err)
	}
	rec, err := results.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Figures) != 2 || rec.Figures[0].ID != "boot.ratio" || rec.Figures[1].ID != "churn.total" {
		t.Fatalf("record %+v: want the old figure kept and the new one added", rec.Figures)
	}
	if f := rec.Figures[1]; f.Command != "make bench" || f.Machine == "" || f.Date == "" || f.Verdict != results.Pass {
		t.Errorf("recorded %+v: want the default command, this machine, today and the verdict", f)
	}
}
