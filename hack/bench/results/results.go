// Package results is the project's one benchmark record, bench/results.json:
// every figure the README's "Measured" table shows, with the value, its
// unit, what it was measured against in the same run, the target, the
// command that reproduces it, the machine and the date. `make bench` merges
// what it measured into the file (a figure replaces the entry with the same
// ID; figures it did not measure stay), and hack/bench/readme generates the
// README's table from it.
package results

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Verdicts of a figure against its target.
const (
	Pass = "PASS"
	Fail = "FAIL"
)

// Figure is one measured figure.
type Figure struct {
	// ID names the figure for good ("churn.total"): a later run's figure
	// with the same ID replaces this one. Dotted, lower case; the prefix
	// is the benchmark.
	ID string `json:"id"`
	// Figure says what was measured, as the README's first column reads.
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	// Unit of Value and Reference.Value: "s", "ms", "MiB", "MB/s", "×".
	Unit string `json:"unit"`
	// Reference is what the figure was measured against, side by side in
	// the same run; nil for a figure on its own.
	Reference *Reference `json:"reference,omitempty"`
	// Ratio compares Value with the reference in the direction Figure
	// names (a time divided by the reference's for "× the floor", the
	// reference's divided by ours for "× as fast"); 0 when there is none.
	Ratio float64 `json:"ratio,omitempty"`
	// Target is what the figure is held to; nil for information.
	Target *Target `json:"target,omitempty"`
	// Verdict is Pass or Fail against Target ("" without one), set by
	// Record.Add.
	Verdict string `json:"verdict,omitempty"`
	// Detail is more of the measurement (rounds, the parts of a total,
	// the other medians), shown after the value.
	Detail string `json:"detail,omitempty"`
	// Command reproduces the figure from the repository's root.
	Command string `json:"command"`
	// Machine is where it was measured (Machine() for this one).
	Machine string `json:"machine"`
	// Date is the day of the measurement, YYYY-MM-DD (UTC).
	Date string `json:"date"`
}

// Reference is the other side of a side-by-side measurement.
type Reference struct {
	// Name says what it is ("virtual-kubelet's mock provider").
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Target is a bound on a figure's value or its ratio.
type Target struct {
	// Of is "value" or "ratio".
	Of string `json:"of"`
	// Op is "<=" or ">=".
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
}

// AtMost and AtLeast bound the value; RatioAtMost and RatioAtLeast the
// ratio.
func AtMost(limit float64) *Target       { return &Target{Of: "value", Op: "<=", Limit: limit} }
func AtLeast(limit float64) *Target      { return &Target{Of: "value", Op: ">=", Limit: limit} }
func RatioAtMost(limit float64) *Target  { return &Target{Of: "ratio", Op: "<=", Limit: limit} }
func RatioAtLeast(limit float64) *Target { return &Target{Of: "ratio", Op: ">=", Limit: limit} }

// Verdict judges f against its target. Nothing measured (a zero value or
// ratio) fails any target: a benchmark that broke must not pass.
func (f Figure) verdict() string {
	t := f.Target
	if t == nil {
		return ""
	}
	v := f.Value
	if t.Of == "ratio" {
		v = f.Ratio
	}
	if v == 0 || math.IsNaN(v) {
		return Fail
	}
	switch {
	case t.Op == "<=" && v <= t.Limit, t.Op == ">=" && v >= t.Limit:
		return Pass
	}
	return Fail
}

// Check reports what is wrong with f as a record entry.
func (f Figure) Check() error {
	var errs []error
	if f.ID == "" || strings.ToLower(f.ID) != f.ID || strings.ContainsAny(f.ID, " \t") {
		errs = append(errs, fmt.Errorf("id %q: want a lower-case dotted name", f.ID))
	}
	if f.Figure == "" || f.Unit == "" || f.Command == "" || f.Machine == "" {
		errs = append(errs, errors.New("figure, unit, command and machine are required"))
	}
	if _, err := time.Parse(time.DateOnly, f.Date); err != nil {
		errs = append(errs, fmt.Errorf("date %q: want YYYY-MM-DD", f.Date))
	}
	if t := f.Target; t != nil && ((t.Of != "value" && t.Of != "ratio") || (t.Op != "<=" && t.Op != ">=")) {
		errs = append(errs, fmt.Errorf("target %+v: want of value|ratio, op <=|>=", *t))
	}
	if t := f.Target; t != nil && t.Of == "ratio" && f.Reference == nil {
		errs = append(errs, errors.New("a ratio target needs the reference it is a ratio to"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("figure %s: %w", f.ID, err)
	}
	return nil
}

// Record is the content of bench/results.json.
type Record struct {
	Figures []Figure `json:"figures"`
}

// Load reads a record; a missing file is an empty record.
func Load(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read benchmark record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse benchmark record %s: %w", path, err)
	}
	for _, f := range r.Figures {
		if err := f.Check(); err != nil {
			return nil, fmt.Errorf("benchmark record %s: %w", path, err)
		}
	}
	return &r, nil
}

// Add puts f into the record, replacing the figure with the same ID (in
// its place, so the README keeps its order) or appending it; it fills the
// verdict and, when empty, the machine and today's date.
func (r *Record) Add(f Figure) (Figure, error) {
	if f.Machine == "" {
		f.Machine = Machine()
	}
	if f.Date == "" {
		f.Date = time.Now().UTC().Format(time.DateOnly)
	}
	// Four significant digits: more than the noise of these machines
	// supports, and a diff of the record stays readable.
	f.Value, f.Ratio = significant(f.Value), significant(f.Ratio)
	if f.Reference != nil {
		ref := *f.Reference
		ref.Value = significant(ref.Value)
		f.Reference = &ref
	}
	f.Verdict = f.verdict()
	if err := f.Check(); err != nil {
		return f, err
	}
	if i := slices.IndexFunc(r.Figures, func(o Figure) bool { return o.ID == f.ID }); i >= 0 {
		r.Figures[i] = f
	} else {
		r.Figures = append(r.Figures, f)
	}
	return f, nil
}

// Save writes the record (indented, one figure per block, so a diff shows
// which figures a run changed), through a temporary file.
func (r *Record) Save(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // targets read "<=", not "\u003c="
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write benchmark record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write benchmark record: %w", err)
	}
	return nil
}

// Machine describes this machine the way the record names machines:
// "linux/amd64, 2 CPUs (AMD EPYC 7B13), 24 GiB". Hypervisor acceleration
// (TCG or KVM) is the benchmark's to say in its detail.
func Machine() string {
	s := fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if model := cpuModel(); model != "" {
		s += " (" + model + ")"
	}
	if mem := memTotal(); mem > 0 {
		s += fmt.Sprintf(", %d GiB", (mem+(1<<29))>>30)
	}
	return s
}

// cpuModel is /proc/cpuinfo's first "model name" (Linux; "" elsewhere).
func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// memTotal is /proc/meminfo's MemTotal in bytes (Linux; 0 elsewhere).
func memTotal() uint64 {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// significant rounds v to four significant digits.
func significant(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	digits := 4 - int(math.Floor(math.Log10(math.Abs(v)))) - 1
	return roundTo(v, digits)
}

// FormatNumber prints v to four significant digits without trailing zeros:
// 1.038, 95.9, 275, 0.14.
func FormatNumber(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(significant(v), 'f', -1, 64)
}

func roundTo(v float64, digits int) float64 {
	if digits < 0 {
		p := math.Pow(10, float64(-digits))
		return math.Round(v/p) * p
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// Quantity prints a value with its unit: "1.038×", "9.4 MiB", "2.7 s".
func Quantity(v float64, unit string) string {
	if unit == "×" {
		return FormatNumber(v) + "×"
	}
	return FormatNumber(v) + " " + unit
}

// TargetText prints a target: "≤ 12 MiB", "ratio ≥ 1×".
func (f Figure) TargetText() string {
	t := f.Target
	if t == nil {
		return ""
	}
	op := map[string]string{"<=": "≤", ">=": "≥"}[t.Op]
	if t.Of == "ratio" || f.Unit == "×" {
		return fmt.Sprintf("%s %.2f×", op, t.Limit)
	}
	return op + " " + Quantity(t.Limit, f.Unit)
}

// Sorted returns the figures in ID order within each benchmark prefix, the
// benchmarks in the order of their first figure.
func (r *Record) Sorted() []Figure {
	first := map[string]int{}
	for i, f := range r.Figures {
		p, _, _ := strings.Cut(f.ID, ".")
		if _, ok := first[p]; !ok {
			first[p] = i
		}
	}
	out := slices.Clone(r.Figures)
	slices.SortStableFunc(out, func(a, b Figure) int {
		pa, _, _ := strings.Cut(a.ID, ".")
		pb, _, _ := strings.Cut(b.ID, ".")
		return cmp.Compare(first[pa], first[pb])
	})
	return out
}

// Markdown is the README's table of the record: one row per figure, in the
// record's order grouped by benchmark, each with the command that
// reproduces it. Machines are named once above the table and per row only
// where they differ from the most common one.
func (r *Record) Markdown() string {
	figs := r.Sorted()
	count := map[string]int{}
	common := ""
	for _, f := range figs {
		count[f.Machine]++
		if count[f.Machine] > count[common] {
			common = f.Machine
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s unless a row says otherwise.\n\n", common)
	b.WriteString("| What | Measured | Target | Reproduce |\n|---|---|---|---|\n")
	for _, f := range figs {
		measured := "**" + Quantity(f.Value, f.Unit) + "**"
		if ref := f.Reference; ref != nil {
			measured += fmt.Sprintf(" against %s %s", ref.Name, Quantity(ref.Value, f.Unit))
			if f.Ratio != 0 {
				measured += fmt.Sprintf(": %.2f×", f.Ratio)
			}
		}
		if f.Detail != "" {
			measured += " (" + f.Detail + ")"
		}
		target := "—"
		if f.Target != nil {
			target = f.TargetText() + " " + f.Verdict
		}
		how := fmt.Sprintf("`%s`, %s", f.Command, f.Date)
		if f.Machine != common {
			how += ", " + f.Machine
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(f.Figure), cell(measured), cell(target), cell(how))
	}
	return b.String()
}

// cell keeps a table cell on its row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
