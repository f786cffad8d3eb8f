// Package doctor runs a node's health checks and reports each with how to
// fix it: what a user runs first on a new machine, and what a bug report
// pastes.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is a check's verdict.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but not as it should (say why)
	Fail Status = "FAIL" // the node will not work until fixed
	Skip Status = "skip" // not applicable here (say why)
)

// Result is one check's outcome. Fix says how to repair a Warn or Fail.
type Result struct {
	Status Status
	Detail string
	Fix    string
}

// Check is one named health check.
type Check struct {
	Name string
	Run  func(ctx context.Context) Result
}

// Report is every check's result, in order.
type Report struct {
	Names   []string
	Results []Result
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// checkTimeout bounds one check: a hung API server or hypervisor probe is
// itself a finding, not a reason for doctor to hang.
const checkTimeout = 30 * time.Second

// Run runs checks in order, each bounded by checkTimeout.
func Run(ctx context.Context, checks []Check) Report {
	var r Report
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		res := c.Run(cctx)
		if res.Status == "" {
			res.Status = OK
		}
		if cctx.Err() != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && res.Status == OK {
			res = Result{Status: Fail, Detail: "timed out after " + checkTimeout.String()}
		}
		cancel()
		r.Names = append(r.Names, c.Name)
		r.Results = append(r.Results, res)
	}
	return r
}

// Print writes the report as a table, then each fix.
func (r Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for i, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Names[i], res.Status, oneLine(res.Detail))
	}
	tw.Flush()
	for i, res := range r.Results {
		if res.Fix != "" && (res.Status == Fail || res.Status == Warn) {
			fmt.Fprintf(w, "\n%s: %s\n  fix: %s\n", r.Names[i], res.Status, res.Fix)
		}
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 110 {
		s = s[:107] + "..."
	}
	return s
}
