package main

import (
	"fmt"
	"io"
	"strings"
)

// Status is one check's verdict.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	// NotApplicable: the check has no meaning on this platform (Rosetta on
	// Linux).
	NotApplicable Status = "n/a"
	// Skipped: applicable, but this machine lacks what it needs (Rosetta
	// not installed); the detail says how to get it.
	Skipped Status = "skip"
)

// Row is one line of a table.
type Row struct {
	Name   string
	Status Status
	Detail string
}

// Report is what mac-check prints: the versions that matter, then every
// check's verdict.
type Report struct {
	Versions []Row // Status unused
	Checks   []Row
	// progress, if set, gets a line per check as it ends.
	progress io.Writer
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// add records a check's outcome.
func (r *Report) add(name string, st Status, format string, args ...any) {
	r.Checks = append(r.Checks, Row{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
	if r.progress != nil {
		fmt.Fprintf(r.progress, "mac-check: %s: %s\n", name, st)
	}
}

// Print writes the report as two Markdown tables, which read as plain text
// in a terminal and render in an issue or pull request.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintln(w, "| component | version |")
	fmt.Fprintln(w, "|---|---|")
	for _, v := range r.Versions {
		fmt.Fprintf(w, "| %s | %s |\n", cell(v.Name), cell(v.Detail))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| check | result | detail |")
	fmt.Fprintln(w, "|---|---|---|")
	pass, fail := 0, 0
	for _, c := range r.Checks {
		fmt.Fprintf(w, "| %s | %s | %s |\n", cell(c.Name), c.Status, cell(c.Detail))
		switch c.Status {
		case Pass:
			pass++
		case Fail:
			fail++
		}
	}
	fmt.Fprintf(w, "\nmac-check: %d passed, %d failed, %d not run here\n", pass, fail, len(r.Checks)-pass-fail)
}

// cell keeps a value on one table line: newlines and pipes would break the
// Markdown row.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if s == "" {
		return "-"
	}
	return s
}
