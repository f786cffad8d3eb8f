package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

// Verdicts of a figure against its target.
const (
	pass = "PASS"
	fail = "FAIL"
)

// row is one line of the final table: a figure, its value, and the
// target it is held to (if any) with the verdict.
type row struct {
	Name    string
	Value   string
	Target  string
	Verdict string
	// figure is what measured() records in bench/results.json.
	figure *results.Figure
}

// info is a figure without a target.
func info(name, value string) row { return row{Name: name, Value: value} }

// atMost is a figure held to value <= limit.
func atMost(name, value string, v, limit float64, limitText string) row {
	r := row{Name: name, Value: value, Target: "<= " + limitText, Verdict: fail}
	if v > 0 && v <= limit {
		r.Verdict = pass
	}
	return r
}

// atLeast is a figure held to value >= limit.
func atLeast(name, value string, v, limit float64, limitText string) row {
	r := row{Name: name, Value: value, Target: ">= " + limitText, Verdict: fail}
	if v >= limit {
		r.Verdict = pass
	}
	return r
}

// missing is a figure that could not be measured: it fails its target.
func missing(name, target, why string) row {
	r := row{Name: name, Value: "n/a (" + why + ")", Target: target}
	if target != "" {
		r.Verdict = fail
	}
	return r
}

// section groups rows under a heading.
type section struct {
	Title string
	Rows  []row
}

// printTable writes every section as one aligned table and returns how
// many targets passed and failed.
func printTable(w io.Writer, sections []section) (passed, failed int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\ttarget\tverdict")
	for _, s := range sections {
		fmt.Fprintf(tw, "%s\t\t\t\n", strings.ToUpper(s.Title))
		for _, r := range s.Rows {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Name, r.Value, r.Target, r.Verdict)
			switch r.Verdict {
			case pass:
				passed++
			case fail:
				failed++
			}
		}
	}
	tw.Flush()
	return passed, failed
}
