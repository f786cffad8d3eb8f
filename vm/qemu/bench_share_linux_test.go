package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// BenchmarkBootSharedMemory compares boots of the floor init with private
// guest RAM (the default without shares), with RAM in a shared memfd (what
// vhost-user needs), and with a memfd plus one virtio-fs share (virtiofsd
// started, vhost-user-fs device probed by the guest). Variants boot in
// turn each round; it reports per variant the median wall time from Start
// to "ready", QEMU's CPU time until then, QEMU's resident memory at ready,
// and ratios to the private variant:
//
//	go test -run '^$' -bench BootSharedMemory -benchtime 5x ./vm/qemu/
func BenchmarkBootSharedMemory(b *testing.B) {
	bundle := floorBundle(b)
	needVirtiofsd(b)
	variants := []struct {
		name         string
		sharedMemory bool
		share        bool
	}{{"private", false, false}, {"memfd", true, false}, {"memfd+share", true, true}}
	walls := make([][]time.Duration, len(variants))
	cpus := make([][]time.Duration, len(variants))
	rss := make([][]time.Duration, len(variants)) // KiB, kept as Durations for median
	for b.Loop() {
		for i, v := range variants {
			d := New(Options{Logger: testLogger})
			d.sharedMemory = v.sharedMemory
			// "wait": every module loads (virtiofs too) before "ready".
			spec := floorSpec(b, bundle, "wait")
			if v.share {
				spec.Shares = []vm.Share{{Tag: "bench", HostPath: b.TempDir()}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			start := time.Now()
			m, err := d.Start(ctx, spec, shortDir(b))
			if err != nil {
				b.Fatal(err)
			}
			port, err := m.Port(ctx, vm.AgentPort)
			if err != nil {
				b.Fatal(err)
			}
			line, err := bufio.NewReader(port).ReadString('\n')
			elapsed := time.Since(start)
			if line != "ready\n" {
				b.Fatalf("%s: port said %q (%v)", v.name, line, err)
			}
			walls[i] = append(walls[i], elapsed)
			cpus[i] = append(cpus[i], processCPU(b, m.Pid()))
			rss[i] = append(rss[i], time.Duration(residentKiB(b, m.Pid())))
			port.Write([]byte("poweroff\n"))
			<-m.Done()
			port.Close()
			cancel()
		}
	}
	wall0, cpu0, rss0 := median(walls[0]), median(cpus[0]), median(rss[0])
	for i, v := range variants {
		wall, cpu, kib := median(walls[i]), median(cpus[i]), median(rss[i])
		b.ReportMetric(float64(wall.Milliseconds()), v.name+"-wall-ms")
		b.ReportMetric(float64(wall)/float64(wall0), v.name+"-wall/private")
		b.ReportMetric(float64(cpu.Milliseconds()), v.name+"-cpu-ms")
		b.ReportMetric(float64(cpu)/float64(cpu0), v.name+"-cpu/private")
		b.ReportMetric(float64(kib)/1024, v.name+"-rss-MiB")
		b.ReportMetric(float64(kib)/float64(rss0), v.name+"-rss/private")
		b.Logf("%-11s wall median %v %v; qemu cpu median %v; rss median %d KiB", v.name, wall, walls[i], cpu, int64(kib))
	}
}

// residentKiB is VmRSS of a process (anonymous, file and shmem pages).
func residentKiB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
