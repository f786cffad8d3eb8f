package provider

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/clock"
)

const (
	// statsCallTimeout bounds one VM's stats call so a stuck guest cannot
	// stall a scrape; metrics-server gives the whole scrape 10 s
	// (--kubelet-request-timeout default).
	statsCallTimeout = 5 * time.Second
	// statsParallel VMs are queried at once (guest agents answer from
	// cgroup files; the wait is the round trip, not host CPU).
	statsParallel = 8
)

// hostSource gives the node-level figures (package hostinfo; tests fake it).
type hostSource interface {
	CPUTime() (time.Duration, error)
	Memory() (hostinfo.Memory, error)
	Disk(path string) (hostinfo.Disk, error)
	BootTime() (time.Time, error)
}

type realHost struct{}

func (realHost) CPUTime() (time.Duration, error)         { return hostinfo.CPUTime() }
func (realHost) Memory() (hostinfo.Memory, error)        { return hostinfo.ReadMemory() }
func (realHost) Disk(path string) (hostinfo.Disk, error) { return hostinfo.ReadDisk(path) }
func (realHost) BootTime() (time.Time, error)            { return hostinfo.BootTime() }

// statsState is what stats keep between scrapes: the previous CPU sample of
// the node and of every container instance, for UsageNanoCores.
type statsState struct {
	host        hostSource
	now         func() time.Time
	callTimeout time.Duration
	parallel    int
	mu          sync.Mutex
	prev        map[string]cpuSample // key: "" for the node, else uid/container/start
}

type cpuSample struct {
	at        time.Time
	usage     uint64 // cumulative core-nanoseconds
	nanoCores *uint64
}

func newStatsState(clk clock.PassiveClock) *statsState {
	return &statsState{host: realHost{}, now: clk.Now, callTimeout: statsCallTimeout, parallel: statsParallel, prev: map[string]cpuSample{}}
}

func (p *Provider) stats() *statsState { return p.statsState }

// nanoCores turns a cumulative CPU counter into a rate against the previous
// sample of the same key, as the kubelet does: nil on the first sample or
// when the counter went backwards (a new cgroup).
func (s *statsState) nanoCores(key string, at time.Time, usage uint64) *uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.prev[key]
	switch {
	case !ok || usage < prev.usage:
		s.prev[key] = cpuSample{at: at, usage: usage}
		return nil
	case !at.After(prev.at):
		return prev.nanoCores // same sample again
	}
	v := uint64(float64(usage-prev.usage) / float64(at.Sub(prev.at)) * float64(time.Second))
	s.prev[key] = cpuSample{at: at, usage: usage, nanoCores: &v}
	return &v
}

// keep forgets the samples of containers that no longer run.
func (s *statsState) keep(keys map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.prev {
		if k != "" && !keys[k] {
			delete(s.prev, k)
		}
	}
}

type containerSample struct {
	rc       runningContainer
	stats    container.Stats
	logBytes uint64
	err      error
}

// sampleContainers queries every running VM concurrently, each with its
// own timeout.
func (p *Provider) sampleContainers(ctx context.Context, s *statsState, rcs []runningContainer) []containerSample {
	out := make([]containerSample, len(rcs))
	sem := make(chan struct{}, s.parallel)
	var wg sync.WaitGroup
	for i, rc := range rcs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
			defer cancel()
			st, err := rc.VM.Stats(cctx)
			if err == nil && st.Time.IsZero() {
				st.Time = s.now()
			}
			out[i] = containerSample{rc: rc, stats: st, err: err, logBytes: p.logBytes(rc)}
		})
	}
	wg.Wait()
	return out
}

// logBytes is the size of a container's log files (every restart's).
func (p *Provider) logBytes(rc runningContainer) uint64 {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: rc.Namespace, Name: rc.Pod, UID: rc.UID}}
	ents, err := os.ReadDir(filepath.Join(p.podDir(pod), rc.Container))
	if err != nil {
		return 0
	}
	var n uint64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
	}
	return n
}

// GetStatsSummary serves /stats/summary: the node, then every pod with a
// running VM. A VM whose stats cannot be read is left out and logged; it
// does not fail the scrape.
func (p *Provider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	sum, _ := p.summary(ctx)
	return sum, nil
}

// summary also returns how many VMs could not be read.
func (p *Provider) summary(ctx context.Context) (*statsv1alpha1.Summary, int) {
	s := p.stats()
	samples := p.sampleContainers(ctx, s, p.runningContainers())
	now := s.now()
	node, disk := p.nodeStats(s, now, samples)
	sum := &statsv1alpha1.Summary{Node: node}
	pods := map[string]*statsv1alpha1.PodStats{}
	procs := map[string]uint64{}
	live := map[string]bool{}
	failed := 0
	for _, cs := range samples {
		rc := cs.rc
		if cs.err != nil {
			failed++
			p.log.Warn("read VM stats; leaving the container out of this scrape", "pod", rc.Namespace+"/"+rc.Pod, "container", rc.Container, "vm", rc.VM.ID(), "err", cs.err)
			continue
		}
		key := string(rc.UID) + "/" + rc.Container + "/" + rc.StartedAt.Format(time.RFC3339Nano)
		live[key] = true
		c := containerStats(cs, s.nanoCores(key, cs.stats.Time, cs.stats.CPUUsageNanos), disk)
		ps := pods[string(rc.UID)]
		if ps == nil {
			ps = &statsv1alpha1.PodStats{
				PodRef:    statsv1alpha1.PodReference{Name: rc.Pod, Namespace: rc.Namespace, UID: string(rc.UID)},
				StartTime: metav1.NewTime(rc.PodStart),
			}
			pods[string(rc.UID)] = ps
		}
		ps.Containers = append(ps.Containers, c)
		procs[string(rc.UID)] += cs.stats.Processes
	}
	s.keep(live)
	for _, ps := range pods {
		sort.Slice(ps.Containers, func(i, j int) bool { return ps.Containers[i].Name < ps.Containers[j].Name })
		addPodTotals(ps, procs[ps.PodRef.UID])
		sum.Pods = append(sum.Pods, *ps)
	}
	sort.Slice(sum.Pods, func(i, j int) bool {
		a, b := sum.Pods[i].PodRef, sum.Pods[j].PodRef
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	return sum, failed
}

// nodeStats reports the host. Without the host's CPU time (darwin without
// cgo) the node's CPU is the sum of its VMs' guest CPU time, which drops
// when a VM goes away.
func (p *Provider) nodeStats(s *statsState, now time.Time, samples []containerSample) (statsv1alpha1.NodeStats, *hostinfo.Disk) {
	ns := statsv1alpha1.NodeStats{NodeName: p.cfg.NodeName}
	t := metav1.NewTime(now)
	if bt, err := s.host.BootTime(); err == nil {
		ns.StartTime = metav1.NewTime(bt)
	}
	usage, err := s.host.CPUTime()
	if err == nil {
		ns.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: ptr(uint64(usage))}
	} else {
		var sum uint64
		for _, cs := range samples {
			if cs.err == nil {
				sum += cs.stats.GuestCPUUsageNanos
			}
		}
		ns.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: &sum}
	}
	ns.CPU.UsageNanoCores = s.nanoCores("", now, *ns.CPU.UsageCoreNanoSeconds)
	if m, err := s.host.Memory(); err == nil {
		used := m.TotalBytes - min(m.AvailableBytes, m.TotalBytes)
		ns.Memory = &statsv1alpha1.MemoryStats{Time: t, AvailableBytes: ptr(m.AvailableBytes), UsageBytes: ptr(used), WorkingSetBytes: ptr(used)}
	} else {
		p.log.Warn("read host memory for node stats", "err", err)
	}
	d, err := s.host.Disk(p.cfg.Root)
	if err != nil {
		p.log.Warn("read state root disk for node stats", "root", p.cfg.Root, "err", err)
		return ns, nil
	}
	ns.Fs = fsStats(t, d)
	// Images live on the same file system as the rest of the state root;
	// the bytes images use are not counted separately.
	img := fsStats(t, d)
	img.UsedBytes = nil
	ns.Runtime = &statsv1alpha1.RuntimeStats{ImageFs: img, ContainerFs: fsStats(t, d)}
	return ns, &d
}

func fsStats(t metav1.Time, d hostinfo.Disk) *statsv1alpha1.FsStats {
	return &statsv1alpha1.FsStats{
		Time: t, AvailableBytes: ptr(d.FreeBytes), CapacityBytes: ptr(d.TotalBytes), UsedBytes: ptr(d.UsedBytes),
		InodesFree: ptr(d.InodesFree), Inodes: ptr(d.Inodes), InodesUsed: ptr(d.Inodes - min(d.InodesFree, d.Inodes)),
	}
}

func containerStats(cs containerSample, nanoCores *uint64, disk *hostinfo.Disk) statsv1alpha1.ContainerStats {
	st := cs.stats
	t := metav1.NewTime(st.Time)
	c := statsv1alpha1.ContainerStats{
		Name:      cs.rc.Container,
		StartTime: metav1.NewTime(cs.rc.StartedAt),
		CPU:       &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: ptr(st.CPUUsageNanos), UsageNanoCores: nanoCores},
		Memory: &statsv1alpha1.MemoryStats{
			Time: t, UsageBytes: ptr(st.MemoryUsageBytes), WorkingSetBytes: ptr(st.MemoryWorkingSet), RSSBytes: ptr(st.MemoryRSSBytes),
		},
		Rootfs: &statsv1alpha1.FsStats{Time: t, UsedBytes: ptr(st.ScratchUsedBytes)},
		Logs:   &statsv1alpha1.FsStats{Time: t, UsedBytes: ptr(cs.logBytes)},
	}
	if st.GuestMemoryBytes > 0 {
		c.Memory.AvailableBytes = ptr(st.GuestMemoryFree)
	}
	if st.ScratchTotalBytes > 0 {
		c.Rootfs.CapacityBytes = ptr(st.ScratchTotalBytes)
		c.Rootfs.AvailableBytes = ptr(st.ScratchTotalBytes - min(st.ScratchUsedBytes, st.ScratchTotalBytes))
	}
	if disk != nil {
		c.Logs.CapacityBytes, c.Logs.AvailableBytes = ptr(disk.TotalBytes), ptr(disk.FreeBytes)
	}
	return c
}

// addPodTotals sums a pod's containers into its pod-level figures.
func addPodTotals(ps *statsv1alpha1.PodStats, procs uint64) {
	var cpu, cores, ws, usage, rss, eph uint64
	allCores := true
	t := ps.Containers[0].CPU.Time
	for _, c := range ps.Containers {
		cpu += *c.CPU.UsageCoreNanoSeconds
		if c.CPU.UsageNanoCores == nil {
			allCores = false
		} else {
			cores += *c.CPU.UsageNanoCores
		}
		ws += *c.Memory.WorkingSetBytes
		usage += *c.Memory.UsageBytes
		rss += *c.Memory.RSSBytes
		eph += *c.Rootfs.UsedBytes + *c.Logs.UsedBytes
		if c.CPU.Time.After(t.Time) {
			t = c.CPU.Time
		}
	}
	ps.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: &cpu}
	if allCores {
		ps.CPU.UsageNanoCores = &cores
	}
	ps.Memory = &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: &ws, UsageBytes: &usage, RSSBytes: &rss}
	ps.EphemeralStorage = &statsv1alpha1.FsStats{Time: t, UsedBytes: &eph}
	ps.ProcessStats = &statsv1alpha1.ProcessStats{ProcessCount: &procs}
}

// The kubelet's /metrics/resource families, with the help texts and
// stability prefixes of pkg/kubelet/metrics/collectors/resource_metrics.go
// (Kubernetes v1.37). metrics-server v0.7+ reads the node_, container_ and
// pod_ families by name and the container, pod and namespace labels.
var resourceFamilies = []struct {
	name, help string
	typ        dto.MetricType
}{
	{"node_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER},
	{"node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes", dto.MetricType_GAUGE},
	{"container_start_time_seconds", "[STABLE] Start time of the container since unix epoch in seconds", dto.MetricType_GAUGE},
	{"container_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER},
	{"container_memory_working_set_bytes", "[STABLE] Current working set of the container in bytes", dto.MetricType_GAUGE},
	{"pod_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER},
	{"pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes", dto.MetricType_GAUGE},
	{"scrape_error", "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE},
	{"resource_scrape_error", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE},
}

// GetMetricsResource serves /metrics/resource from the same figures as the
// summary. scrape_error is 1 when some VM could not be read (its containers
// are missing from this scrape).
func (p *Provider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	sum, failed := p.summary(ctx)
	return resourceMetrics(sum, failed > 0), nil
}

func resourceMetrics(sum *statsv1alpha1.Summary, scrapeError bool) []*dto.MetricFamily {
	metrics := map[string][]*dto.Metric{}
	counter := map[string]bool{}
	for _, f := range resourceFamilies {
		counter[f.name] = f.typ == dto.MetricType_COUNTER
	}
	// add records one sample; at nil means no timestamp. labels are
	// name/value pairs in label-name order.
	add := func(name string, v float64, at *metav1.Time, labels ...string) {
		m := &dto.Metric{}
		for i := 0; i+1 < len(labels); i += 2 {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr(labels[i]), Value: ptr(labels[i+1])})
		}
		if at != nil {
			m.TimestampMs = ptr(at.UnixMilli())
		}
		if counter[name] {
			m.Counter = &dto.Counter{Value: &v}
		} else {
			m.Gauge = &dto.Gauge{Value: &v}
		}
		metrics[name] = append(metrics[name], m)
	}
	seconds := func(ns uint64) float64 { return float64(ns) / float64(time.Second) }
	n := sum.Node
	if n.CPU != nil && n.CPU.UsageCoreNanoSeconds != nil {
		add("node_cpu_usage_seconds_total", seconds(*n.CPU.UsageCoreNanoSeconds), &n.CPU.Time)
	}
	if n.Memory != nil && n.Memory.WorkingSetBytes != nil {
		add("node_memory_working_set_bytes", float64(*n.Memory.WorkingSetBytes), &n.Memory.Time)
	}
	for _, ps := range sum.Pods {
		pod, ns := ps.PodRef.Name, ps.PodRef.Namespace
		for _, c := range ps.Containers {
			// The kubelet sends the start time without a timestamp.
			add("container_start_time_seconds", float64(c.StartTime.UnixNano())/float64(time.Second), nil, "container", c.Name, "namespace", ns, "pod", pod)
			add("container_cpu_usage_seconds_total", seconds(*c.CPU.UsageCoreNanoSeconds), &c.CPU.Time, "container", c.Name, "namespace", ns, "pod", pod)
			add("container_memory_working_set_bytes", float64(*c.Memory.WorkingSetBytes), &c.Memory.Time, "container", c.Name, "namespace", ns, "pod", pod)
		}
		add("pod_cpu_usage_seconds_total", seconds(*ps.CPU.UsageCoreNanoSeconds), &ps.CPU.Time, "namespace", ns, "pod", pod)
		add("pod_memory_working_set_bytes", float64(*ps.Memory.WorkingSetBytes), &ps.Memory.Time, "namespace", ns, "pod", pod)
	}
	errValue := 0.0
	if scrapeError {
		errValue = 1
	}
	add("scrape_error", errValue, nil)
	add("resource_scrape_error", errValue, nil)

	var out []*dto.MetricFamily
	for _, f := range resourceFamilies {
		ms := metrics[f.name]
		if len(ms) == 0 {
			continue // the text encoder rejects empty families
		}
		out = append(out, &dto.MetricFamily{Name: ptr(f.name), Help: ptr(f.help), Type: ptr(f.typ), Metric: ms})
	}
	return out
}

func ptr[T any](v T) *T { return &v }
