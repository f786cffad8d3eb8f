package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestProcessCPUOfThisProcess(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the 10 ms ticks of /proc move.
	deadline := time.Now().Add(5 * time.Second)
	after := before
	for after <= before && time.Now().Before(deadline) {
		x := 0
		for i := range 10_000_000 {
			x += i
		}
		_ = x
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after <= before {
		t.Fatalf("CPU time did not grow while spinning: %v -> %v", before, after)
	}
	if _, err := processCPU(-1); err == nil {
		t.Fatal("no error for a process that cannot exist")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime 250 and
	// stime 50 ticks are 3 s.
	stat := "4242 (qemu (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 123 0 0"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (short) S 1")); err == nil {
		t.Fatal("a truncated stat parsed")
	}
}

func TestProcessMemoryOfThisProcess(t *testing.T) {
	m, err := processMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	rss, ok := statusBytes(string(status), "VmRSS")
	if !ok {
		t.Fatal("no VmRSS in /proc/self/status")
	}
	// Read moments apart: within a factor of two of each other.
	if m.RSS == 0 || m.PSS == 0 || m.PSS > m.RSS || m.RSS > 2*rss || rss > 2*m.RSS {
		t.Fatalf("smaps_rollup RSS %d PSS %d against status VmRSS %d", m.RSS, m.PSS, rss)
	}
	if _, err := parseSmapsRollup([]byte("Rss: 12 kB\n")); err == nil || !strings.Contains(err.Error(), "Pss") {
		t.Fatalf("a rollup without Pss: %v", err)
	}
}

func TestStatusBytes(t *testing.T) {
	status := "Name:\tinit\nRssAnon:\t    2864 kB\nRssFile:\t       0 kB\nRssShmem:\t    5912 kB\n"
	for key, want := range map[string]uint64{"RssAnon": 2864 << 10, "RssFile": 0, "RssShmem": 5912 << 10} {
		if got, ok := statusBytes(status, key); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, ok, want)
		}
	}
	if _, ok := statusBytes(status, "VmRSS"); ok {
		t.Error("found a key that is not there")
	}
}
