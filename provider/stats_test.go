package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
)

var _ nodeutil.Provider = (*Provider)(nil)

// statsRuntime is the fake runtime whose VMs report scripted stats
// per container name.
type statsRuntime struct {
	*fakeRuntime
	mu     sync.Mutex
	script map[string]func(ctx context.Context) (container.Stats, error)
}

type statsVM struct {
	vmruntime.VM
	rt   *statsRuntime
	name string
}

func (r *statsRuntime) CreateVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	vm, err := r.fakeRuntime.CreateVM(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &statsVM{VM: vm, rt: r, name: cfg.Labels[podworker.LabelContainer]}, nil
}

func (r *statsRuntime) set(name string, f func(ctx context.Context) (container.Stats, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script[name] = f
}

func (s *statsVM) Stats(ctx context.Context) (container.Stats, error) {
	s.rt.mu.Lock()
	f := s.rt.script[s.name]
	s.rt.mu.Unlock()
	if f == nil {
		return container.Stats{}, errors.New("no stats scripted")
	}
	return f(ctx)
}

func fixedStats(st container.Stats) func(context.Context) (container.Stats, error) {
	return func(context.Context) (container.Stats, error) { return st, nil }
}

// fakeHost is a scripted host.
type fakeHost struct {
	cpu     time.Duration
	cpuErr  error
	mem     hostinfo.Memory
	disk    hostinfo.Disk
	boot    time.Time
	diskArg string
}

func (h *fakeHost) CPUTime() (time.Duration, error)  { return h.cpu, h.cpuErr }
func (h *fakeHost) Memory() (hostinfo.Memory, error) { return h.mem, nil }
func (h *fakeHost) Disk(path string) (hostinfo.Disk, error) {
	h.diskArg = path
	return h.disk, nil
}
func (h *fakeHost) BootTime() (time.Time, error) { return h.boot, nil }

var statsT0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// newStatsProvider runs pod ns/web with the given containers until each
// has a running VM.
func newStatsProvider(t testing.TB, containers ...string) (*Provider, *statsRuntime, *fakeHost, func(time.Time)) {
	t.Helper()
	rt := &statsRuntime{fakeRuntime: newFakeRuntime(testingclock.NewFakeClock(time.Now())), script: map[string]func(context.Context) (container.Stats, error){}}
	p, err := New(Config{
		NodeName: "mac", Root: t.TempDir(), Runtime: rt, Recorder: record.NewFakeRecorder(1000),
		Objects: &fakeObjects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods: resource.MustParse("10")},
	})
	if err != nil {
		t.Fatal(err)
	}
	host := &fakeHost{cpu: 100 * time.Second, mem: hostinfo.Memory{TotalBytes: 16 << 30, AvailableBytes: 10 << 30},
		disk: hostinfo.Disk{TotalBytes: 500 << 30, FreeBytes: 200 << 30, UsedBytes: 300 << 30, Inodes: 1000, InodesFree: 400}, boot: statsT0.Add(-time.Hour)}
	now := statsT0
	var nowMu sync.Mutex
	s := p.stats()
	s.host = host
	s.now = func() time.Time { nowMu.Lock(); defer nowMu.Unlock(); return now }
	s.callTimeout = 200 * time.Millisecond
	setNow := func(t time.Time) { nowMu.Lock(); now = t; nowMu.Unlock() }

	var ctrs []corev1.Container
	for _, c := range containers {
		ctrs = append(ctrs, ctr(c, "run"))
	}
	if err := p.CreatePod(context.Background(), testPod("web", ctrs...)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(p.runningContainers()) < len(containers) {
		if time.Now().After(deadline) {
			t.Fatalf("containers never ran: %d of %d", len(p.runningContainers()), len(containers))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, rt, host, setNow
}

func TestStatsSummaryShape(t *testing.T) {
	p, rt, host, _ := newStatsProvider(t, "side", "app")
	rt.set("app", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 3e9, MemoryUsageBytes: 50 << 20, MemoryWorkingSet: 40 << 20,
		MemoryRSSBytes: 30 << 20, Processes: 2, ScratchUsedBytes: 1 << 20, ScratchTotalBytes: 1 << 30, GuestMemoryBytes: 512 << 20, GuestMemoryFree: 300 << 20}))
	rt.set("side", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 1e9, MemoryUsageBytes: 10 << 20, MemoryWorkingSet: 8 << 20,
		MemoryRSSBytes: 6 << 20, Processes: 1, ScratchUsedBytes: 2 << 20, ScratchTotalBytes: 1 << 30}))
	logDir := filepath.Join(p.cfg.Root, "pods", "ns_web_uid--web", "app")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir, "0.log"), make([]byte, 123), 0o644); err != nil {
		t.Fatal(err)
	}

	sum, err := p.GetStatsSummary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := sum.Node
	if n.NodeName != "mac" || !n.StartTime.Time.Equal(host.boot) || *n.CPU.UsageCoreNanoSeconds != uint64(100*time.Second) ||
		*n.Memory.AvailableBytes != 10<<30 || *n.Memory.WorkingSetBytes != 6<<30 || *n.Fs.CapacityBytes != 500<<30 ||
		*n.Fs.AvailableBytes != 200<<30 || *n.Fs.InodesUsed != 600 || n.Runtime.ImageFs.UsedBytes != nil || host.diskArg != p.cfg.Root {
		t.Fatalf("node stats = %+v", n)
	}
	if len(sum.Pods) != 1 {
		t.Fatalf("pods = %d, want 1", len(sum.Pods))
	}
	ps := sum.Pods[0]
	if ps.PodRef.Name != "web" || ps.PodRef.Namespace != "ns" || ps.PodRef.UID != "uid--web" || len(ps.Containers) != 2 ||
		ps.Containers[0].Name != "app" || ps.Containers[1].Name != "side" {
		t.Fatalf("pod = %+v", ps)
	}
	app := ps.Containers[0]
	if *app.CPU.UsageCoreNanoSeconds != 3e9 || *app.Memory.WorkingSetBytes != 40<<20 || *app.Memory.RSSBytes != 30<<20 ||
		*app.Memory.AvailableBytes != 300<<20 || *app.Rootfs.UsedBytes != 1<<20 || *app.Rootfs.AvailableBytes != 1<<30-1<<20 ||
		*app.Logs.UsedBytes != 123 || *app.Logs.CapacityBytes != 500<<30 || app.StartTime.IsZero() {
		t.Fatalf("app stats = %+v cpu=%+v mem=%+v", app, app.CPU, app.Memory)
	}
	if *ps.CPU.UsageCoreNanoSeconds != 4e9 || *ps.Memory.WorkingSetBytes != 48<<20 || *ps.Memory.UsageBytes != 60<<20 ||
		*ps.EphemeralStorage.UsedBytes != 3<<20+123 || *ps.ProcessStats.ProcessCount != 3 || ps.StartTime.IsZero() {
		t.Fatalf("pod totals: cpu=%d ws=%d eph=%d procs=%d", *ps.CPU.UsageCoreNanoSeconds, *ps.Memory.WorkingSetBytes,
			*ps.EphemeralStorage.UsedBytes, *ps.ProcessStats.ProcessCount)
	}
}

func TestNanoCoresFromTwoSamples(t *testing.T) {
	p, rt, host, setNow := newStatsProvider(t, "app")
	rt.set("app", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 5e9, MemoryWorkingSet: 1}))
	first, _ := p.GetStatsSummary(context.Background())
	if c := first.Pods[0].Containers[0]; c.CPU.UsageNanoCores != nil || first.Node.CPU.UsageNanoCores != nil || first.Pods[0].CPU.UsageNanoCores != nil {
		t.Fatal("the first scrape has no previous sample and must not report usageNanoCores")
	}
	// 2 s later the container used 1 s of CPU (0.5 cores) and the host 3 s
	// (1.5 cores).
	rt.set("app", fixedStats(container.Stats{Time: statsT0.Add(2 * time.Second), CPUUsageNanos: 6e9, MemoryWorkingSet: 1}))
	host.cpu += 3 * time.Second
	setNow(statsT0.Add(2 * time.Second))
	second, _ := p.GetStatsSummary(context.Background())
	c := second.Pods[0].Containers[0]
	if c.CPU.UsageNanoCores == nil || *c.CPU.UsageNanoCores != 5e8 {
		t.Fatalf("container usageNanoCores = %v, want 500000000", c.CPU.UsageNanoCores)
	}
	if pc := second.Pods[0].CPU.UsageNanoCores; pc == nil || *pc != 5e8 {
		t.Fatalf("pod usageNanoCores = %v, want 500000000", pc)
	}
	if nc := second.Node.CPU.UsageNanoCores; nc == nil || *nc != 15e8 {
		t.Fatalf("node usageNanoCores = %v, want 1500000000", nc)
	}
	// The same sample again (a second scraper in between) keeps the rate.
	again, _ := p.GetStatsSummary(context.Background())
	if c := again.Pods[0].Containers[0]; c.CPU.UsageNanoCores == nil || *c.CPU.UsageNanoCores != 5e8 {
		t.Fatalf("repeated sample: usageNanoCores = %v, want 500000000 again", c.CPU.UsageNanoCores)
	}
	// A counter that went backwards is a new cgroup: no rate again.
	rt.set("app", fixedStats(container.Stats{Time: statsT0.Add(4 * time.Second), CPUUsageNanos: 1e6, MemoryWorkingSet: 1}))
	third, _ := p.GetStatsSummary(context.Background())
	if third.Pods[0].Containers[0].CPU.UsageNanoCores != nil {
		t.Fatal("a reset counter must not produce a rate")
	}
}

func TestNodeCPUFallsBackToGuestsWithoutHostCPUTime(t *testing.T) {
	p, rt, host, _ := newStatsProvider(t, "app", "side")
	host.cpuErr = hostinfo.ErrNotSupported
	rt.set("app", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 1, GuestCPUUsageNanos: 7e9}))
	rt.set("side", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 1, GuestCPUUsageNanos: 2e9}))
	sum, _ := p.GetStatsSummary(context.Background())
	if got := *sum.Node.CPU.UsageCoreNanoSeconds; got != 9e9 {
		t.Fatalf("node CPU = %d, want the VMs' guest CPU 9e9", got)
	}
}

// scrapeMetrics serves GetMetricsResource through virtual-kubelet's own handler
// and parses the text as a Prometheus scraper does.
func scrapeMetrics(t *testing.T, p *Provider) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	api.HandlePodMetricsResource(p.GetMetricsResource)(rec, httptest.NewRequest(http.MethodGet, "/metrics/resource", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics/resource: %d %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, rec.Body)
	}
	return fams
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

func TestMetricsResourceExposition(t *testing.T) {
	p, rt, _, _ := newStatsProvider(t, "app")
	rt.set("app", fixedStats(container.Stats{Time: statsT0.Add(time.Second), CPUUsageNanos: 2500e6, MemoryWorkingSet: 64 << 20}))
	fams := scrapeMetrics(t, p)
	want := map[string]struct {
		typ    dto.MetricType
		labels string
		value  float64
		stamp  bool
	}{
		"node_cpu_usage_seconds_total":       {dto.MetricType_COUNTER, "", 100, true},
		"node_memory_working_set_bytes":      {dto.MetricType_GAUGE, "", 6 << 30, true},
		"container_cpu_usage_seconds_total":  {dto.MetricType_COUNTER, "container=app,namespace=ns,pod=web", 2.5, true},
		"container_memory_working_set_bytes": {dto.MetricType_GAUGE, "container=app,namespace=ns,pod=web", 64 << 20, true},
		"container_start_time_seconds":       {dto.MetricType_GAUGE, "container=app,namespace=ns,pod=web", -1, false},
		"pod_cpu_usage_seconds_total":        {dto.MetricType_COUNTER, "namespace=ns,pod=web", 2.5, true},
		"pod_memory_working_set_bytes":       {dto.MetricType_GAUGE, "namespace=ns,pod=web", 64 << 20, true},
		"scrape_error":                       {dto.MetricType_GAUGE, "", 0, false},
		"resource_scrape_error":              {dto.MetricType_GAUGE, "", 0, false},
	}
	if len(fams) != len(want) {
		t.Errorf("got %d families, want %d", len(fams), len(want))
	}
	for name, w := range want {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("family %s missing or not one sample: %v", name, f)
			continue
		}
		m := f.Metric[0]
		v := m.GetGauge().GetValue()
		if w.typ == dto.MetricType_COUNTER {
			v = m.GetCounter().GetValue()
		}
		if f.GetType() != w.typ || labelString(m) != w.labels || (w.value >= 0 && v != w.value) || (m.TimestampMs != nil) != w.stamp {
			t.Errorf("%s = type %s labels %q value %v timestamp %v; want %s %q %v stamp=%v", name, f.GetType(), labelString(m), v, m.TimestampMs, w.typ, w.labels, w.value, w.stamp)
		}
	}
	if ts := fams["container_cpu_usage_seconds_total"].Metric[0].GetTimestampMs(); ts != statsT0.Add(time.Second).UnixMilli() {
		t.Errorf("container CPU timestamp = %d, want the sample's time %d", ts, statsT0.Add(time.Second).UnixMilli())
	}
	st := fams["container_start_time_seconds"].Metric[0].GetGauge().GetValue()
	if d := time.Since(time.Unix(0, int64(st*1e9))); d < 0 || d > time.Minute {
		t.Errorf("container_start_time_seconds = %v, not the container's recent start", st)
	}
}

func TestFailingVMDoesNotFailScrape(t *testing.T) {
	p, rt, _, _ := newStatsProvider(t, "good", "broken", "stuck")
	rt.set("good", fixedStats(container.Stats{Time: statsT0, CPUUsageNanos: 1e9, MemoryWorkingSet: 1 << 20}))
	rt.set("broken", func(context.Context) (container.Stats, error) { return container.Stats{}, container.ErrStopped })
	rt.set("stuck", func(ctx context.Context) (container.Stats, error) { <-ctx.Done(); return container.Stats{}, ctx.Err() })
	start := time.Now()
	sum, err := p.GetStatsSummary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Pods) != 1 || len(sum.Pods[0].Containers) != 1 || sum.Pods[0].Containers[0].Name != "good" {
		t.Fatalf("summary pods = %+v, want only the good container", sum.Pods)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a stuck VM held the scrape for %v", d)
	}
	fams := scrapeMetrics(t, p)
	if v := fams["scrape_error"].Metric[0].GetGauge().GetValue(); v != 1 {
		t.Fatalf("scrape_error = %v, want 1 when a VM could not be read", v)
	}
	if n := len(fams["container_cpu_usage_seconds_total"].Metric); n != 1 {
		t.Fatalf("container samples = %d, want 1", n)
	}
}

// BenchmarkMetricsResourceScrape measures one /metrics/resource scrape of
// 24 running containers whose VMs each take 2 ms to answer, querying the
// VMs one at a time (parallel=1) and as the provider does (parallel=8).
func BenchmarkMetricsResourceScrape(b *testing.B) {
	var names []string
	for i := range 24 {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	p, rt, _, _ := newStatsProvider(b, names...)
	for _, n := range names {
		rt.set(n, func(context.Context) (container.Stats, error) {
			time.Sleep(2 * time.Millisecond)
			return container.Stats{Time: time.Now(), CPUUsageNanos: 1e9, MemoryWorkingSet: 1 << 20}, nil
		})
	}
	for _, par := range []int{1, statsParallel} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			p.stats().parallel = par
			for b.Loop() {
				if fams, _ := p.GetMetricsResource(context.Background()); len(fams) != 9 {
					b.Fatalf("%d families", len(fams))
				}
			}
		})
	}
}
