package results

import (
	"path/filepath"
	"strings"
	"testing"
)

func fig(id string, v float64, t *Target) Figure {
	return Figure{ID: id, Figure: "a figure", Value: v, Unit: "MiB", Target: t, Command: "make bench", Machine: "m", Date: "2026-12-07"}
}

func TestVerdicts(t *testing.T) {
	withRef := func(f Figure, ratio float64) Figure {
		f.Reference, f.Ratio = &Reference{Name: "ref", Value: 1}, ratio
		return f
	}
	for _, c := range []struct {
		f    Figure
		want string
	}{
		{fig("a.b", 9.4, AtMost(12)), Pass},
		{fig("a.b", 12, AtMost(12)), Pass},
		{fig("a.b", 12.01, AtMost(12)), Fail},
		{fig("a.b", 0, AtMost(12)), Fail}, // nothing measured is no pass
		{fig("a.b", 1.2, AtLeast(1)), Pass},
		{fig("a.b", 0.99, AtLeast(1)), Fail},
		{withRef(fig("a.b", 5, RatioAtLeast(1)), 1.02), Pass},
		{withRef(fig("a.b", 5, RatioAtLeast(1)), 0.98), Fail},
		{withRef(fig("a.b", 5, RatioAtLeast(1)), 0), Fail},
		{fig("a.b", 5, nil), ""},
	} {
		var r Record
		got, err := r.Add(c.f)
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != c.want {
			t.Errorf("%+v target %+v: verdict %q, want %q", c.f, c.f.Target, got.Verdict, c.want)
		}
	}
}

func TestAddRejectsIncompleteFigures(t *testing.T) {
	for name, f := range map[string]Figure{
		"no id":            {Figure: "x", Value: 1, Unit: "s", Command: "c"},
		"upper-case id":    {ID: "Churn", Figure: "x", Value: 1, Unit: "s", Command: "c"},
		"no command":       {ID: "a.b", Figure: "x", Value: 1, Unit: "s"},
		"no unit":          {ID: "a.b", Figure: "x", Value: 1, Command: "c"},
		"bad date":         {ID: "a.b", Figure: "x", Value: 1, Unit: "s", Command: "c", Date: "7 Dec"},
		"ratio target, no": {ID: "a.b", Figure: "x", Value: 1, Unit: "s", Command: "c", Target: RatioAtLeast(1), Ratio: 1},
	} {
		var r Record
		if _, err := r.Add(f); err == nil {
			t.Errorf("%s: Add accepted %+v", name, f)
		}
		if len(r.Figures) != 0 {
			t.Errorf("%s: a rejected figure was recorded", name)
		}
	}
}

// A run replaces the figures it measured in place and keeps the others,
// so the README's order and the figures of skipped benchmarks survive.
func TestAddReplacesByIDAndSaveLoadRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	r, err := Load(path)
	if err != nil || len(r.Figures) != 0 {
		t.Fatalf("Load of a missing file: %+v, %v", r, err)
	}
	for _, f := range []Figure{fig("boot.ratio", 1.04, nil), fig("shim.rss", 9.4, AtMost(12)), fig("net.vm-vm", 95.9, nil)} {
		if _, err := r.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	r, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(fig("shim.rss", 13.123456, AtMost(12))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(fig("boot.agent", 4.3, nil)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range r.Sorted() {
		ids = append(ids, f.ID)
	}
	if got, want := strings.Join(ids, " "), "boot.ratio boot.agent shim.rss net.vm-vm"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	shim := r.Figures[1]
	if shim.Value != 13.12 || shim.Verdict != Fail {
		t.Errorf("replaced figure: value %v verdict %q, want 13.12 (four digits) FAIL", shim.Value, shim.Verdict)
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		1.0381: "1.038", 95.9: "95.9", 275: "275", 0.14506: "0.1451", 12345: "12350", 2: "2", 0: "0",
	} {
		if got := FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	var r Record
	a := fig("churn.total", 3.2, RatioAtLeast(1))
	a.Unit, a.Reference, a.Ratio, a.Detail = "s", &Reference{Name: "the mock", Value: 3.5}, 3.5/3.2, "a | b"
	b := fig("shim.rss", 9.4, AtMost(12))
	b.Machine = "other"
	for _, f := range []Figure{a, a, b} {
		if _, err := r.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Markdown()
	for _, want := range []string{
		"Measured on m unless",
		"| a figure | **3.2 s** against the mock 3.5 s: 1.09× (a \\| b) | ≥ 1.00× PASS | `make bench`, 2026-12-07 |\n",
		"| a figure | **9.4 MiB** | ≤ 12 MiB PASS | `make bench`, 2026-12-07, other |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n| a figure"); n != 2 {
		t.Errorf("%d rows, want 2 (a figure added twice is one row):\n%s", n, got)
	}
}
