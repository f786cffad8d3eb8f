package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The cgroup logic on a plain directory standing in for cgroupfs (files
// behave like the kernel's for single writes); the real hierarchy is
// exercised by the server tests.
func TestCreateCgroupWritesLimits(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"cgroup.controllers": "cpuset cpu io memory pids\n"})
	cg, err := createCgroup(root, "c1", 64<<20, 250)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(cg.path, name))
		return string(b)
	}
	if cg.path != filepath.Join(root, "vkav", "c1") || read("memory.max") != "67108864" || read("cpu.max") != "25000 100000" {
		t.Fatalf("path %s memory.max %q cpu.max %q", cg.path, read("memory.max"), read("cpu.max"))
	}
	if _, err := os.Stat(filepath.Join(root, "vkav", "cgroup.subtree_control")); err != nil {
		t.Fatalf("controllers not enabled for children of vkav: %v", err)
	}
	// Reusing an existing cgroup is fine (container restart).
	if _, err := createCgroup(root, "c1", 0, 0); err != nil {
		t.Fatal(err)
	}
	bare := t.TempDir()
	writeFiles(t, bare, map[string]string{"cgroup.controllers": "pids\n"})
	if _, err := createCgroup(bare, "c2", 1<<20, 0); !errors.Is(err, ErrControllerUnavailable) {
		t.Fatalf("memory limit without the controller: %v", err)
	}
	if _, err := createCgroup(bare, "c3", 0, 100); !errors.Is(err, ErrControllerUnavailable) {
		t.Fatalf("cpu limit without the controller: %v", err)
	}
}

func TestCgroupStatsParsing(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"memory.current": "10485760\n",
		"memory.stat":    "anon 4194304\nfile 6291456\ninactive_file 2097152\n",
		"memory.events":  "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"pids.current":   "3\n",
	})
	var st api.StatsResponse
	if err := cgroupStats(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.CpuUsageNs != 1500000 || st.MemoryUsageBytes != 10485760 || st.MemoryWorkingSetBytes != 8388608 ||
		st.MemoryRssBytes != 4194304 || st.OomKills != 1 || st.Pids != 3 {
		t.Fatalf("stats %+v", &st)
	}
	// Without memory and pids controllers: zeros, and pids counted.
	bare := t.TempDir()
	writeFiles(t, bare, map[string]string{"cpu.stat": "usage_usec 7\n", "cgroup.procs": "10\n11\n"})
	st = api.StatsResponse{}
	if err := cgroupStats(bare, &st); err != nil || st.CpuUsageNs != 7000 || st.MemoryUsageBytes != 0 || st.Pids != 2 {
		t.Fatalf("bare stats %+v %v", &st, err)
	}
	if err := cgroupStats(t.TempDir(), &st); err == nil {
		t.Fatal("a directory without cpu.stat is not a cgroup")
	}
}

func TestProcFileParsing(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
	// user+nice+system+irq+softirq+steal = 100+5+50+3+2+1 ticks of 10 ms.
	if got := procStatBusyNs([]byte(stat)); got != 161*10_000_000 {
		t.Fatalf("busy %d", got)
	}
	meminfo := "MemTotal:        2048000 kB\nMemFree:  10 kB\nMemAvailable:    1024000 kB\n"
	if statusKiB([]byte(meminfo), "MemAvailable:") != 1024000 || statusKiB([]byte(meminfo), "Nope:") != 0 {
		t.Fatal("meminfo parsing")
	}
	if kv := parseKeyValues([]byte("a 1\nbad\nb x\nc 3\n")); len(kv) != 2 || kv["c"] != 3 {
		t.Fatalf("kv %v", kv)
	}
	if !strings.Contains(kernelRelease(), ".") {
		t.Fatalf("kernel release %q", kernelRelease())
	}
}
