package main

import (
	"strings"
	"testing"
)

func TestVerdicts(t *testing.T) {
	for _, c := range []struct {
		r    row
		want string
	}{
		{atMost("boot", "1.05x", 1.05, 1.10, "1.10x"), pass},
		{atMost("boot", "1.10x", 1.10, 1.10, "1.10x"), pass},
		{atMost("boot", "1.11x", 1.11, 1.10, "1.10x"), fail},
		// Nothing measured is no pass.
		{atMost("rss", "0", 0, 10<<20, "10 MiB"), fail},
		{atLeast("conv", "1.00x", 1.0, 1.0, "1.00x"), pass},
		{atLeast("conv", "0.99x", 0.99, 1.0, "1.00x"), fail},
		{missing("conv", ">= 1.00x", "failed"), fail},
		{missing("info", "", "skipped"), ""},
		{info("x", "1"), ""},
	} {
		if c.r.Verdict != c.want {
			t.Errorf("%+v: verdict %q, want %q", c.r, c.r.Verdict, c.want)
		}
	}
}

func TestPrintTableCounts(t *testing.T) {
	var b strings.Builder
	passed, failed := printTable(&b, []section{
		{Title: "boot", Rows: []row{
			info("floor", "1 s"),
			atMost("ratio", "1.05x", 1.05, 1.1, "1.10x"),
		}},
		{Title: "memory", Rows: []row{atMost("rss", "11 MiB", 11<<20, 10<<20, "10 MiB")}},
	})
	if passed != 1 || failed != 1 {
		t.Fatalf("passed %d failed %d, want 1 and 1", passed, failed)
	}
	out := b.String()
	for _, want := range []string{"BOOT", "MEMORY", "ratio", "<= 1.10x", "PASS", "FAIL", "11 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
