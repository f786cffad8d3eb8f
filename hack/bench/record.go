package main

import (
	"flag"
	"fmt"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

var resultsPath = flag.String("results", "bench/results.json", "the benchmark record: every figure measured with measured() is merged into it (\"\" leaves it alone)")

// measured is how a benchmark adds a figure to the run: the row it returns
// goes into the benchmark's section for the printed table, and the figure
// into bench/results.json (and so the README) at the end of the run. The
// command defaults to `make bench`; machine and date are this run's.
//
//	rows = append(rows, measured(results.Figure{ID: "shim.rss", Figure: "…", Value: 9.4, Unit: "MiB", Target: results.AtMost(12)}))
func measured(f results.Figure) row {
	if f.Command == "" {
		f.Command = "make bench"
	}
	var scratch results.Record
	checked, err := scratch.Add(f)
	if err != nil {
		return missing(f.Figure, f.TargetText(), err.Error())
	}
	value := results.Quantity(checked.Value, checked.Unit)
	if ref := checked.Reference; ref != nil {
		value += fmt.Sprintf(" (%s: %s", ref.Name, results.Quantity(ref.Value, checked.Unit))
		if checked.Ratio != 0 {
			value += fmt.Sprintf("; %.2f×", checked.Ratio)
		}
		value += ")"
	}
	return row{Name: checked.Figure, Value: value, Target: checked.TargetText(), Verdict: checked.Verdict, figure: &checked}
}

// recordResults merges the run's figures into the record.
func recordResults(path string, sections []section) (int, error) {
	if path == "" {
		return 0, nil
	}
	rec, err := results.Load(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sections {
		for _, r := range s.Rows {
			if r.figure == nil {
				continue
			}
			if _, err := rec.Add(*r.figure); err != nil {
				return n, err
			}
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, rec.Save(path)
}
