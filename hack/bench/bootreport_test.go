package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/image/rootfs/rootfsbench"
)

func boots(wallsMs, cpusMs []int, rss uint64) []bootSample {
	var out []bootSample
	for i := range wallsMs {
		out = append(out, bootSample{
			Wall: time.Duration(wallsMs[i]) * time.Millisecond, CPU: time.Duration(cpusMs[i]) * time.Millisecond,
			AgentRSS: rss, QEMU: memory{RSS: 300 << 20, PSS: 290 << 20},
		})
	}
	return out
}

// verdicts maps every row that has a target to its verdict.
func verdicts(sections []section) map[string]string {
	out := map[string]string{}
	for _, s := range sections {
		for _, r := range s.Rows {
			if r.Target != "" {
				key := r.Name // what a missed target is named by
				if r.figure != nil {
					key = r.figure.ID // a recorded figure
				}
				out[key] = r.Verdict
			}
		}
	}
	return out
}

func TestBootVerdicts(t *testing.T) {
	r := bootResults{
		accel: "tcg", containerMiB: 512,
		floor: boots([]int{1000, 1100, 900}, []int{1000, 1000, 1000}, 0),
		// Wall within 1.10x of the floor, CPU 1.20x.
		agent:     boots([]int{1050, 1150, 950}, []int{1200, 1200, 1200}, 9<<20),
		idleFloor: memory{RSS: 240 << 20, PSS: 230 << 20},
		product: []productSample{{
			Create: 2 * time.Second, CPU: 2 * time.Second, AgentRSSCreated: 9 << 20, AgentRSSWorked: 11 << 20,
			QEMU: memory{RSS: 300 << 20, PSS: 290 << 20}, Shim: memory{RSS: 50 << 20, PSS: 20 << 20},
		}},
	}
	v := verdicts(r.sections())
	want := map[string]string{
		"boot.ratio":                    pass,
		"agent-ready / floor, QEMU CPU": fail,
		"agent.rss-ready":               pass,
		"agent.rss-worked":              fail,
	}
	for name, verdict := range want {
		if v[name] != verdict {
			t.Errorf("%s: %q, want %q (all: %v)", name, v[name], verdict, v)
		}
	}
	if len(v) != len(want) {
		t.Errorf("targets %v, want exactly %v", v, want)
	}
}

func TestBootFailuresAreReportedAsMissedTargets(t *testing.T) {
	boom := errors.New("qemu-system-x86_64 not found")
	r := bootResults{failed: map[string]error{"floor": boom, "agent": boom, "product": boom, "idle floor": boom}}
	sections := r.sections()
	v := verdicts(sections)
	if len(v) != 4 {
		t.Fatalf("targets %v, want the 4 targets, all missed", v)
	}
	for name, verdict := range v {
		if verdict != fail {
			t.Errorf("%s: %q with nothing measured", name, verdict)
		}
	}
	var b strings.Builder
	printTable(&b, sections)
	if !strings.Contains(b.String(), "qemu-system-x86_64 not found") {
		t.Fatalf("the table does not say why:\n%s", b.String())
	}
}

func TestConvertVerdicts(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	r := convertResults{layers: 4, fileBytes: 40 << 20}
	for range 3 {
		r.rounds = append(r.rounds, roundOf(ms(50), ms(200), ms(160)))
	}
	v := verdicts([]section{r.section()})
	if v["convert.tar"] != pass || v["convert.gzip"] != fail {
		t.Fatalf("verdicts %v: want tar (3.2x) to pass and gzip (0.8x) to fail", v)
	}
	v = verdicts([]section{convertResults{err: errors.New("mkfs.ext4 not found")}.section()})
	if len(v) != 2 || v["mkfs / Build, tar layers"] != fail {
		t.Fatalf("a failed conversion benchmark: %v", v)
	}
}

func roundOf(build, gzip, mkfs time.Duration) rootfsbench.Round {
	return rootfsbench.Round{
		Build:     rootfsbench.Timing{Wall: build, CPU: build},
		BuildGzip: rootfsbench.Timing{Wall: gzip, CPU: gzip},
		Mkfs:      rootfsbench.Timing{Wall: mkfs, CPU: mkfs},
	}
}

func TestSkippedBenchmarksHaveNoVerdict(t *testing.T) {
	r := bootResults{
		floor: boots([]int{1000}, []int{1000}, 0),
		agent: boots([]int{1050}, []int{1050}, 8<<20),
	}
	v := verdicts(r.sections())
	if _, ok := v["agent.rss-worked"]; ok {
		t.Fatalf("a skipped product path still has a verdict: %v", v)
	}
	if v["agent-ready / floor, QEMU CPU"] != pass || v["agent.rss-ready"] != pass {
		t.Fatalf("verdicts %v", v)
	}
}
