package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bootVariant is one way to boot the floor init, compared side by side.
type bootVariant struct {
	name    string
	machine string
	cmdline string
}

func bootVariants(b *testing.B) []bootVariant {
	return []bootVariant{
		{name: "q35", machine: "q35"},
		{name: "pc", machine: "pc"},
		// microvm has no PIT/HPET/PM-timer reference under TCG and hangs
		// calibrating the TSC; tell the kernel the TSC rate to boot it at all.
		{name: "microvm", machine: "microvm,pcie=on,rtc=on,pit=on,pic=on",
			cmdline: "tsc=reliable tsc_early_khz=" + strconv.Itoa(hostTSCkHz(b))},
		// The serial console costs an exit per byte; quiet drops ~300 lines.
		{name: "q35-quiet", machine: "q35", cmdline: "quiet"},
	}
}

// BenchmarkBootToReady boots the floor init once per variant per round, in
// turn, so load from other processes hits every variant alike. It reports
// per variant the median host wall time from Start to "ready", the median
// CPU time QEMU used until then (less sensitive to other load on the host,
// since under TCG the guest's work is QEMU's CPU time), and both as ratios
// to q35:
//
//	go test -run '^$' -bench BootToReady -benchtime 5x ./vm/qemu/
func BenchmarkBootToReady(b *testing.B) {
	bundle := floorBundle(b)
	variants := bootVariants(b)
	times := make([][]time.Duration, len(variants))
	cpus := make([][]time.Duration, len(variants))
	for b.Loop() {
		for i, v := range variants {
			d := New(Options{Machine: v.machine, Logger: testLogger})
			spec := floorSpec(b, bundle, "")
			spec.Cmdline = v.cmdline
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			start := time.Now()
			m, err := d.Start(ctx, spec, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			port, err := m.Port(ctx, "vkav.agent")
			if err != nil {
				b.Fatal(err)
			}
			line, err := bufio.NewReader(port).ReadString('\n')
			elapsed := time.Since(start)
			cpu := processCPU(b, m.Pid())
			port.Close()
			if line != "ready\n" {
				b.Fatalf("%s: port said %q (%v)", v.name, line, err)
			}
			times[i] = append(times[i], elapsed)
			cpus[i] = append(cpus[i], cpu)
			<-m.Done()
			cancel()
		}
	}
	base, cpuBase := median(times[0]), median(cpus[0])
	for i, v := range variants {
		med, cpu := median(times[i]), median(cpus[i])
		b.ReportMetric(float64(med.Milliseconds()), v.name+"-wall-ms")
		b.ReportMetric(float64(med)/float64(base), v.name+"-wall/q35")
		b.ReportMetric(float64(cpu.Milliseconds()), v.name+"-cpu-ms")
		b.ReportMetric(float64(cpu)/float64(cpuBase), v.name+"-cpu/q35")
		b.Logf("%-9s wall median %v %v; qemu cpu median %v %v", v.name, med, times[i], cpu, cpus[i])
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// hostTSCkHz reads the host's CPU clock from /proc/cpuinfo; under TCG the
// guest TSC counts host cycles.
func hostTSCkHz(b *testing.B) int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(mhz * 1000)
			}
		}
	}
	b.Fatal(fmt.Errorf("no cpu MHz in /proc/cpuinfo"))
	return 0
}

// processCPU is the user+system CPU time of a running process so far
// (/proc/<pid>/stat fields 14 and 15, in clock ticks of 1/100 s).
func processCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	const ticksPerSecond = 100 // USER_HZ on Linux x86 and arm64
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}
