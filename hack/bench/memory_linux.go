package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/initrdpath"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/initrd"
	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// The bounds on an idle VM's host memory and on memory a container
// freed.
const (
	idleOverFloorTarget = 24 << 20
	returnTarget        = 1.10
	returnWithin        = 10 * time.Second
	// allocMiB is what the container allocates and frees: dd's block
	// buffer, one malloc that reading /dev/zero touches page by page.
	allocMiB = 300
	// idleSettle is how long each VM idles before its memory is read:
	// free page reporting reports free blocks two seconds after they
	// accumulate (the kernel's PAGE_REPORTING_DELAY), and the agent trims
	// its heap one second after its last request.
	idleSettle = 5 * time.Second
)

// memVariant is one kind of VM whose idle memory is measured.
type memVariant struct {
	name string
	rt   *container.Runtime // nil: the floor VM
	// initrd is the container VMs' initrd file (the floor's is its spec's).
	initrd string
	// env is set in the bench's environment while the container is
	// created (the shim, which starts QEMU, inherits it).
	env string
	// floor boots a floor VM (rt == nil).
	floor *bootBench
	idle  []memory
	// maps is where each idle QEMU's memory was (memmap_linux.go).
	maps []qemuMemoryMap
	// afterMaps is where QEMU's memory was returnWithin after the free.
	afterMaps []qemuMemoryMap
	// guestUsed is the guest's MemTotal - MemFree when idle (containers).
	guestUsed []uint64
	// After allocating and freeing allocMiB: the peak, the RSS returnWithin
	// later, and how long it took to come within returnTarget of idle (0:
	// not within returnWithin).
	peak, after []uint64
	back        []time.Duration
}

// runMemory measures host memory per VM, interleaved in the same rounds:
// the floor VM idle; an idle busybox container VM without free page
// reporting (its initrd does not load virtio_balloon); the same with it,
// as it ships. Each container then allocates and frees allocMiB, and
// QEMU's RSS is followed for returnWithin.
func runMemory(ctx context.Context, o options, work string, log *slog.Logger) section {
	s := section{Title: fmt.Sprintf("host memory per VM (QEMU; idle %s, then %d MiB allocated and freed)", idleSettle, allocMiB)}
	fail := func(err error) section {
		log.Error("memory benchmark", "err", err)
		s.Rows = append(s.Rows,
			missing("idle busybox VM - idle floor VM (QEMU RSS)", "<= 24 MiB", err.Error()),
			missing(fmt.Sprintf("QEMU RSS %s after freeing %d MiB / idle", returnWithin, allocMiB), "<= 1.10", err.Error()))
		return s
	}
	bundle, err := benchGuest(o, true)
	if err != nil {
		return fail(err)
	}
	dir := filepath.Join(work, "memory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	p, err := newProductBench(ctx, o, bundle, dir, log)
	if err != nil {
		return fail(err)
	}
	defer p.close(context.WithoutCancel(ctx))
	noReporting := bundle
	noReporting.Initrd = filepath.Join(dir, "initrd-no-balloon.img")
	if err := initrdWithoutModule(bundle.Initrd, noReporting.Initrd, "virtio_balloon"); err != nil {
		return fail(err)
	}
	newRuntime := func(name string, g guest.Bundle) (*container.Runtime, error) {
		return container.New(container.Config{
			Root: filepath.Join(dir, "root-"+name), Images: p.images, Network: p.net, Guest: g, Driver: "qemu",
			ShimArgv: p.shimArgv, Logger: quietLog(),
		})
	}
	old, err := newRuntime("no-balloon", noReporting)
	if err != nil {
		return fail(err)
	}
	// The kernel's own reporting order (pageblock, 2 MiB) next to the
	// bundle's (guest.PageReportingOrder).
	defaultOrder := bundle
	defaultOrder.Initrd = filepath.Join(dir, "initrd-order9.img")
	if err := initrdWithFile(bundle.Initrd, defaultOrder.Initrd, agentPageReportingOrderFile, "9\n"); err != nil {
		return fail(err)
	}
	order9, err := newRuntime("order9", defaultOrder)
	if err != nil {
		return fail(err)
	}
	floorVariant := &memVariant{name: "floor VM"}
	// The same with QEMU's own TCG code buffer size (vm/qemu caps it:
	// DefaultTCGCodeBufferMiB), the floor and a container alike.
	floorUncapped := &memVariant{name: "floor VM, QEMU's default TCG code buffer"}
	uncappedEnv := qemu.TCGCodeBufferEnv + "=-1"
	floorBench := func(v *memVariant, tb int) *bootBench {
		bb := &bootBench{keep: o.keep, bundle: bundle, driver: qemu.New(qemu.Options{Logger: quietLog(), TCGCodeBufferMiB: tb}), work: dir, memoryMiB: o.memoryMiB, log: log}
		bb.idleMap = func(pid int, spec vm.Spec) {
			mm, err := readQEMUMemoryMap(pid, spec.MemoryMiB<<20, spec.Initrd)
			if err != nil {
				log.Warn("idle floor VM's memory map", "err", err)
				return
			}
			v.maps = append(v.maps, mm)
			log.Debug("idle floor VM", "variant", v.name, "memoryMap", mm)
		}
		return bb
	}
	floorVariant.floor = floorBench(floorVariant, 0)
	floorUncapped.floor = floorBench(floorUncapped, -1)
	floorUncapped.floor.n = 1 << 20 // VM IDs apart from the other floor's
	variants := []*memVariant{
		floorVariant,
		{name: "busybox VM without free page reporting", rt: old, initrd: noReporting.Initrd},
		{name: "busybox VM (free page reporting)", rt: p.rt, initrd: bundle.Initrd},
		floorUncapped,
		{name: "busybox VM, QEMU's default TCG code buffer", rt: p.rt, initrd: bundle.Initrd, env: uncappedEnv},
		{name: "busybox VM, the kernel's reporting order (9)", rt: order9, initrd: defaultOrder.Initrd},
	}
	for round := 0; round < o.memoryRounds && ctx.Err() == nil; round++ {
		for _, i := range roundOrder(len(variants), round) {
			v := variants[i]
			if v.rt == nil {
				m, err := v.floor.idleFloorMemory(ctx, idleSettle)
				if err != nil {
					return fail(fmt.Errorf("%s, round %d: %w", v.name, round, err))
				}
				v.idle = append(v.idle, m)
				continue
			}
			if err := allocFreeRound(ctx, v, p, round); err != nil {
				return fail(fmt.Errorf("%s, round %d: %w", v.name, round, err))
			}
			log.Debug("memory", "variant", v.name, "round", round, "idle", fmtMiB(v.idle[len(v.idle)-1].RSS),
				"peak", fmtMiB(v.peak[len(v.peak)-1]), "after", fmtMiB(v.after[len(v.after)-1]))
		}
		log.Info("memory round done", "round", round, "load", loadAverage())
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	return memorySection(s, variants)
}

// memoryCommand reproduces the memory figures (the memory benchmark alone).
const memoryCommand = "go run ./hack/bench -skip boot,product,run,pod,shim,convert,net,churn -memory-rounds 3"

func memorySection(s section, variants []*memVariant) section {
	floor, before, after := variants[0], variants[1], variants[2]
	floorRSS := medianMemory(floor.idle).RSS
	for _, v := range variants {
		s.Rows = append(s.Rows, info(fmt.Sprintf("%s idle: RSS / PSS (%d VMs)", v.name, len(v.idle)), fmtMemory(medianMemory(v.idle))))
		if len(v.maps) > 0 {
			s.Rows = append(s.Rows, info(fmt.Sprintf("%s idle: QEMU's RSS by mapping, medians", v.name), medianMemoryMap(v.maps).String()))
		}
		if len(v.guestUsed) > 0 {
			s.Rows = append(s.Rows, info(fmt.Sprintf("%s idle: guest memory in use (MemTotal - MemFree)", v.name), fmtMiB(median(v.guestUsed))))
		}
	}
	for _, v := range variants {
		if v.rt == nil {
			continue
		}
		s.Rows = append(s.Rows, info(fmt.Sprintf("%s: %d MiB allocated and freed: peak / %s later (/ idle); back within 10 %% after", v.name, allocMiB, returnWithin),
			fmt.Sprintf("%s / %s (%.2fx); %s", fmtMiB(median(v.peak)), fmtMiB(median(v.after)), ratio(median(v.after), medianMemory(v.idle).RSS), backWithin(v))))
		s.Rows = append(s.Rows, info(fmt.Sprintf("%s: QEMU's RSS by mapping %s after the free, medians", v.name, returnWithin), medianMemoryMap(v.afterMaps).String()))
	}
	// Each container against the floor VM booted with the same TCG code
	// buffer.
	for _, v := range variants[3:] {
		if v.rt == nil {
			continue
		}
		ref := floor
		if v.env != "" {
			ref = variants[3]
		}
		s.Rows = append(s.Rows, info(fmt.Sprintf("%s - %s (QEMU RSS)", v.name, ref.name),
			fmt.Sprintf("%+.1f MiB", (float64(medianMemory(v.idle).RSS)-float64(medianMemory(ref.idle).RSS))/(1<<20))))
	}
	idle := medianMemory(after.idle).RSS
	over := int64(idle) - int64(floorRSS)
	mm, fm := medianMemoryMap(after.maps), medianMemoryMap(floor.maps)
	diff := func(a, b uint64) string { return fmt.Sprintf("%+.0f", (float64(a)-float64(b))/(1<<20)) }
	s.Rows = append(s.Rows,
		measured(results.Figure{ID: "memory.idle-over-floor",
			Figure: fmt.Sprintf("… with free page reporting, idle %s: QEMU RSS over an idle floor VM's in the same rounds", idleSettle),
			Value:  float64(over) / (1 << 20), Unit: "MiB", Target: results.AtMost(idleOverFloorTarget >> 20),
			Detail: fmt.Sprintf("%s against the floor's %s (TCG code buffer capped at %d MiB for both, vm/qemu; TCG only, vz has no such buffer; the floor's trivial init leaves the kernel's reporting order and per-CPU free lists as they are, the agent tunes both); "+
				"by mapping, ours - the floor's, MiB: guest RAM %s (%s vs %s; the guest uses %s), TCG code %s, QEMU's initrd %s, heap %s, files %s; "+
				"without free page reporting %s, %.2fx; %d rounds",
				fmtMiB(idle), fmtMiB(floorRSS), qemu.DefaultTCGCodeBufferMiB,
				diff(mm.GuestRAM, fm.GuestRAM), fmtMiB(mm.GuestRAM), fmtMiB(fm.GuestRAM), fmtMiB(median(after.guestUsed)),
				diff(mm.TCG, fm.TCG), diff(mm.Initrd, fm.Initrd), diff(mm.Heap, fm.Heap), diff(mm.Files, fm.Files),
				fmtMiB(medianMemory(before.idle).RSS), ratio(medianMemory(before.idle).RSS, idle), len(after.idle)),
			Command: memoryCommand}),
		measured(results.Figure{ID: "memory.return-10s",
			Figure: fmt.Sprintf("… a container that allocates and frees %d MiB: QEMU RSS %s later / idle", allocMiB, returnWithin),
			Value:  ratio(median(after.after), idle), Unit: "×", Target: results.AtMost(returnTarget),
			Detail: fmt.Sprintf("peak %s; %s %s after the free against %s idle, back within 10 %% after %s (the guest reports free blocks of order %d and up, in passes 2 s apart; the agent keeps the per-CPU free lists, which reporting does not see, small); without free page reporting %s, nothing returns; %d rounds",
				fmtMiB(median(after.peak)), fmtMiB(median(after.after)), returnWithin, fmtMiB(idle), backWithin(after), guest.PageReportingOrder,
				fmtMiB(median(before.after)), len(after.idle)),
			Command: memoryCommand}),
	)
	return s
}

func backWithin(v *memVariant) string {
	if bs := nonZero(v.back); len(bs) == len(v.back) && len(bs) > 0 {
		return fmtDuration(median(bs))
	}
	return "not within " + returnWithin.String()
}

func nonZero(ds []time.Duration) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		if d > 0 {
			out = append(out, d)
		}
	}
	return out
}

// allocFreeRound creates a busybox container whose main process sleeps,
// reads QEMU's idle memory, runs dd with a block of allocMiB (allocated,
// filled from /dev/zero, freed when dd exits) and follows QEMU's RSS.
func allocFreeRound(ctx context.Context, v *memVariant, p *productBench, round int) (err error) {
	if k, val, ok := strings.Cut(v.env, "="); ok {
		os.Setenv(k, val)
		defer os.Unsetenv(k)
	}
	sb, err := v.rt.Create(ctx, container.VMConfig{
		Name: "mem-" + strconv.Itoa(round), ImageRef: p.ref, MemoryBytes: containerMemory,
		LogDir: filepath.Join(p.root, "logs"),
	})
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, sb.Delete(dctx))
	}()
	if _, err := sb.Start(ctx, container.ProcessConfig{ID: "main", Args: []string{"sleep", "86400"}, LogName: "main"}); err != nil {
		return fmt.Errorf("start the main process: %w", err)
	}
	st, err := sb.State(ctx)
	if err != nil {
		return fmt.Errorf("container VM state: %w", err)
	}
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	idle, err := processMemory(st.HypervisorPid)
	if err != nil {
		return err
	}
	idleMap, err := readQEMUMemoryMap(st.HypervisorPid, containerMemory+v.rt.Overhead(), v.initrd)
	if err != nil {
		return err
	}
	gs, err := sb.Stats(ctx)
	if err != nil {
		return fmt.Errorf("guest memory: %w", err)
	}
	used := gs.GuestMemoryBytes - gs.GuestMemoryFree
	p.log.Debug("idle container VM", "variant", v.name, "qemuRSS", fmtMiB(idle.RSS), "guestUsed", fmtMiB(used),
		"memoryMap", idleMap, "largestMappings", largestMappings(st.HypervisorPid, 6))
	var out bytes.Buffer
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("guest meminfo idle (kB)", "variant", v.name, "meminfo", guestMeminfo(ctx, sb))
	}
	if round == 0 {
		// What the guest kernel reports, as the agent set it.
		if es, err := sb.Exec(ctx, container.ProcessConfig{ID: "order", Args: []string{"cat", "/sys/module/page_reporting/parameters/page_reporting_order"}},
			container.IO{Stdout: &out, Stderr: &out}); err == nil {
			p.log.Info("guest page reporting order", "variant", v.name, "order", strings.TrimSpace(out.String()), "exit", es.Code)
		}
		out.Reset()
	}
	// QEMU's RSS is sampled while dd runs too: with small per-CPU free
	// lists the guest reports what dd freed as soon as it exits, before
	// Exec has returned.
	during := make(chan uint64, 1)
	stop := make(chan struct{})
	go func() {
		var high uint64
		defer func() { during <- high }()
		for {
			if m, err := processMemory(st.HypervisorPid); err == nil {
				high = max(high, m.RSS)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	es, err := sb.Exec(ctx, container.ProcessConfig{
		ID: "alloc", Args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=" + strconv.Itoa(allocMiB) + "M", "count=1"},
	}, container.IO{Stdout: &out, Stderr: &out})
	close(stop)
	peakDuring := <-during
	if err != nil {
		return fmt.Errorf("exec dd: %w", err)
	}
	if es.Code != 0 {
		return fmt.Errorf("dd exited %d: %s", es.Code, strings.TrimSpace(out.String()))
	}
	freed := time.Now()
	peak, back := peakDuring, time.Duration(0)
	var last memory
	for {
		m, err := processMemory(st.HypervisorPid)
		if err != nil {
			return err
		}
		last, peak = m, max(peak, m.RSS)
		since := time.Since(freed)
		if back == 0 && float64(m.RSS) <= returnTarget*float64(idle.RSS) {
			back = max(since, time.Millisecond)
		}
		if since >= returnWithin {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if peak < idle.RSS+allocMiB<<20/2 {
		return fmt.Errorf("QEMU's RSS peaked at %s over an idle %s: dd did not allocate %d MiB", fmtMiB(peak), fmtMiB(idle.RSS), allocMiB)
	}
	afterMap, err := readQEMUMemoryMap(st.HypervisorPid, containerMemory+v.rt.Overhead(), v.initrd)
	if err != nil {
		return err
	}
	var usedAfter uint64
	if gs, err := sb.Stats(ctx); err == nil {
		usedAfter = gs.GuestMemoryBytes - gs.GuestMemoryFree
	}
	p.log.Debug("container VM after the free", "variant", v.name, "memoryMap", afterMap, "guestUsed", fmtMiB(usedAfter))
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("guest meminfo after the free (kB)", "variant", v.name, "meminfo", guestMeminfo(ctx, sb))
	}
	v.idle = append(v.idle, idle)
	v.maps = append(v.maps, idleMap)
	v.afterMaps = append(v.afterMaps, afterMap)
	v.guestUsed = append(v.guestUsed, used)
	v.peak = append(v.peak, peak)
	v.after = append(v.after, last.RSS)
	v.back = append(v.back, back)
	return nil
}

// guestMeminfo is the guest's /proc/meminfo read through the container
// (for -v: what the guest's memory is).
func guestMeminfo(ctx context.Context, sb *container.VM) string {
	var out bytes.Buffer
	if _, err := sb.Exec(ctx, container.ProcessConfig{ID: "meminfo", Args: []string{"cat", "/proc/meminfo", "/proc/zoneinfo"}}, container.IO{Stdout: &out, Stderr: &out}); err != nil {
		return err.Error()
	}
	var keep []string
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == "count:" || f[0] == "high:") {
			// The per-CPU free lists (zoneinfo's pagesets): free pages
			// MemFree does not count.
			keep = append(keep, "pcp-"+strings.TrimSuffix(f[0], ":")+"="+f[1])
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "MemFree", "Buffers", "Cached", "AnonPages", "Shmem", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "AnonHugePages", "Percpu", "VmallocUsed", "Unevictable":
			keep = append(keep, k+"="+strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return strings.Join(keep, " ")
}

// agentModulesList is where the agent's initrd lists the modules it loads,
// as the initrd's archive names it (without the leading slash).
var agentModulesList = strings.TrimPrefix(initrdpath.ModulesList, "/")

// initrdWithoutModule writes to dst the agent initrd src followed by a
// second cpio archive that replaces modules.list with one that leaves out
// module: the kernel unpacks concatenated archives in order, later files
// replacing earlier ones, so the VM is the product's in everything else.
func initrdWithoutModule(src, dst, module string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read initrd: %w", err)
	}
	list, err := cpioFile(data, agentModulesList)
	if err != nil {
		return fmt.Errorf("initrd %s: %w", src, err)
	}
	var kept []string
	for _, line := range strings.Split(string(list), "\n") {
		if strings.TrimSuffix(filepath.Base(line), ".ko") != module {
			kept = append(kept, line)
		}
	}
	newList := strings.Join(kept, "\n")
	if len(newList) == len(list) {
		return fmt.Errorf("initrd %s: %s does not list %s", src, agentModulesList, module)
	}
	return initrdWithFile(src, dst, agentModulesList, newList)
}

// agentPageReportingOrderFile is initrdpath.PageReportingOrderFile as the
// initrd's archive names it (without the leading slash).
var agentPageReportingOrderFile = strings.TrimPrefix(initrdpath.PageReportingOrderFile, "/")

// initrdWithFile writes to dst the initrd src followed by a second cpio
// archive holding one file, name with content: the kernel unpacks
// concatenated archives in order, later files replacing earlier ones, so
// the VM is the product's in everything else.
func initrdWithFile(src, dst, name, content string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read initrd: %w", err)
	}
	var extra bytes.Buffer
	w := initrd.NewWriter(&extra)
	if err := w.File(name, 0o644, int64(len(content)), strings.NewReader(content)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The next archive starts on a 4-byte boundary.
	for len(data)%4 != 0 {
		data = append(data, 0)
	}
	return os.WriteFile(dst, append(data, extra.Bytes()...), 0o644)
}

// cpioFile finds name in an uncompressed newc cpio archive.
func cpioFile(archive []byte, name string) ([]byte, error) {
	const headerLen = 110
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off+headerLen <= len(archive); {
		h := archive[off : off+headerLen]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("no newc cpio header at offset %d", off)
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
			return int(v), err
		}
		size, err1 := field(6)
		nameLen, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("cpio header at offset %d: %w", off, err)
		}
		nameEnd := off + headerLen + nameLen
		dataStart := align(nameEnd)
		if dataStart+size > len(archive) {
			return nil, io.ErrUnexpectedEOF
		}
		entry := strings.TrimPrefix(strings.TrimRight(string(archive[off+headerLen:nameEnd]), "\x00"), "./")
		if entry == "TRAILER!!!" {
			break
		}
		if entry == name {
			return archive[dataStart : dataStart+size], nil
		}
		off = align(dataStart + size)
	}
	return nil, fmt.Errorf("%s is not in the archive", name)
}

// largestMappings lists a process's n largest resident mappings
// (/proc/<pid>/smaps), for -v: where a VM's host memory is.
func largestMappings(pid, n int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return err.Error()
	}
	type mapping struct {
		name string
		kb   uint64
	}
	var ms []mapping
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = f[0]
			if len(f) >= 6 {
				cur += " " + f[5]
			}
		case len(f) >= 2 && f[0] == "Rss:":
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			ms = append(ms, mapping{cur, kb})
		}
	}
	slices.SortFunc(ms, func(a, b mapping) int { return cmp.Compare(b.kb, a.kb) })
	var out []string
	for _, m := range ms[:min(n, len(ms))] {
		out = append(out, fmt.Sprintf("%s=%.1fMiB", m.name, float64(m.kb)/1024))
	}
	return strings.Join(out, "; ")
}
