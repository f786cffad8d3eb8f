package main

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// runDoctor runs `vk-applevm doctor` as a user would first: against the
// machine's own state root (no --root), with the guest bundle under test.
// It passes when doctor does (exit 0: no check failed).
func runDoctor(ctx context.Context, bin, guestDir string, rep *Report) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--guest", guestDir, "doctor").CombinedOutput()
	summary := summarizeDoctor(string(out))
	if err != nil {
		rep.add(checkDoctor, Fail, "%v: %s", err, summary)
		return
	}
	rep.add(checkDoctor, Pass, "%s", summary)
}

// summarizeDoctor reads doctor's table (CHECK, STATUS, DETAIL columns as
// text/tabwriter aligns them) and counts the verdicts, naming every check
// that is not ok.
func summarizeDoctor(out string) string {
	lines := strings.Split(out, "\n")
	statusCol, detailCol := -1, -1
	counts := map[string]int{}
	var notOK []string
	total := 0
	for _, line := range lines {
		if statusCol < 0 {
			if strings.HasPrefix(line, "CHECK") {
				statusCol, detailCol = strings.Index(line, "STATUS"), strings.Index(line, "DETAIL")
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			break // the table ends; the fixes follow
		}
		if len(line) < detailCol || statusCol < 0 || detailCol < statusCol {
			continue
		}
		name := strings.TrimSpace(line[:statusCol])
		status := strings.TrimSpace(line[statusCol:detailCol])
		detail := strings.TrimSpace(line[detailCol:])
		total++
		counts[status]++
		if status != "ok" && status != "skip" {
			notOK = append(notOK, fmt.Sprintf("%s %s (%s)", name, status, detail))
		}
	}
	if total == 0 {
		return "no table in doctor's output: " + lastLine(out)
	}
	var parts []string
	for s, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(parts)
	s := fmt.Sprintf("%d checks: %s", total, strings.Join(parts, ", "))
	if len(notOK) > 0 {
		s += "; " + strings.Join(notOK, "; ")
	}
	return s
}
