package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// PageReportingOrderParam is the kernel's knob for the free page reporting
// order the initrd carries (initrdpath.PageReportingOrderFile;
// mm/page_reporting.c, built in with CONFIG_PAGE_REPORTING).
const PageReportingOrderParam = "/sys/module/page_reporting/parameters/page_reporting_order"

// PerCPUPageListHighFraction sets how much free memory each CPU may keep
// in its own free lists (vm.percpu_pagelist_high_fraction: a zone's pages
// / fraction, at least four batches). Pages there are free but neither in
// MemFree nor seen by free page reporting. The kernel's default (from
// the zone's low watermark) let a 640 MiB guest's one CPU hold 8965 pages
// (35 MiB); measured in hack/bench's memory benchmark (-v logs the
// guest's zoneinfo), an idle busybox guest kept 13 MiB there and 32 MiB
// after a container freed 300 MiB, memory the host never got back. A large
// fraction leaves the floor of four batches (about 0.5 MiB); a VM of one or
// two vCPUs has little lock contention for the lists to save.
const PerCPUPageListHighFraction = 1 << 20

// PerCPUPageListHighFractionSysctl is its sysctl.
const PerCPUPageListHighFractionSysctl = "/proc/sys/vm/percpu_pagelist_high_fraction"

// ParseModuleList reads modules.list: one module path per line, relative to
// the modules directory, in load (dependency) order. Blank lines and lines
// starting with '#' are ignored.
func ParseModuleList(r io.Reader) ([]string, error) {
	var list []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		clean := path.Clean(line)
		if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
			return nil, fmt.Errorf("modules.list line %d: %q must be a path inside the modules directory", n, line)
		}
		list = append(list, clean)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.list: %w", err)
	}
	return list, nil
}

// portModule is the module whose device is the console ports; modules.list
// up to it is the port prefix (guest.PortModule; the agent does not import
// host-side packages).
const portModule = "virtio_console"

// ModuleName is the kernel's name for a module file: the base name without
// .ko.
func ModuleName(file string) string {
	return strings.TrimSuffix(path.Base(file), ".ko")
}

// ErrModuleLoaded is what a load function returns for a module that is
// already present (finit_module's EEXIST); the loader counts it as loaded.
var ErrModuleLoaded = errors.New("module already loaded")

// ModuleLoader loads the listed modules in order, in the background: the
// agent starts serving as soon as the port's modules (first in the list)
// are in, and CreateContainer waits for Done.
type ModuleLoader struct {
	dir  string
	list []string
	load func(path string) error
	log  *slog.Logger

	// then runs on Run's thread once the module thenAfter has been tried.
	then      func()
	thenAfter string

	// tried holds, per listed module, a channel closed once it has been
	// tried (fixed at construction; closing is guarded by mu).
	tried map[string]chan struct{}
	// deferred are the modules Run loads last, once release is closed or
	// deferBound has passed (Defer); a bound of 0 holds them until release.
	deferred   map[string]bool
	deferBound time.Duration
	release    chan struct{}
	releaseOne sync.Once
	// settled closes once every module has been tried but those held
	// without a bound (Settled).
	settled    chan struct{}
	settledOne sync.Once

	mu     sync.Mutex
	loaded []string
	failed map[string]error
	closed map[string]bool
	done   chan struct{}
}

// NewModuleLoader loads each entry of list from dir with load.
func NewModuleLoader(dir string, list []string, load func(path string) error, log *slog.Logger) *ModuleLoader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &ModuleLoader{dir: dir, list: list, load: load, log: log, failed: map[string]error{}, done: make(chan struct{}),
		tried: map[string]chan struct{}{}, closed: map[string]bool{}, release: make(chan struct{}), settled: make(chan struct{})}
	for _, rel := range list {
		m.tried[ModuleName(rel)] = make(chan struct{})
	}
	return m
}

// AfterModule makes Run call then on its own OS thread once the module
// called last has been tried, before the modules after it; when no module
// of the list has that name, then runs before the first. Done closes after
// then has returned. then may change the state of the thread (its
// scheduling priority): Run keeps to that one thread, which ends with it.
// Call it before Run.
func (m *ModuleLoader) AfterModule(last string, then func()) {
	m.thenAfter, m.then = last, then
}

// Defer makes Run load the modules called names (the kernel's names) after
// all the others, and only once Release has been called or bound has
// passed since Run began: under TCG one module load holds the guest's one
// vCPU for tens of milliseconds, and the modules no container start needs
// (the power button, vsock, the balloon, virtio-fs without shares) would
// otherwise load in the middle of the first container's start. Waiting
// for a deferred module (Tried) releases them. The deferred modules keep
// their relative order; none may be a dependency of a module that is not
// deferred. A bound of 0 holds them until Release: a template guest
// (vkavtemplate) must not bind the drivers of devices whose host ends
// differ in every machine resumed from it. Call it before Run.
func (m *ModuleLoader) Defer(bound time.Duration, names ...string) {
	m.deferBound = bound
	m.deferred = map[string]bool{}
	for _, n := range names {
		m.deferred[n] = true
	}
}

// Release lets Run load the deferred modules (Defer) once it has loaded
// the others. Calling it again does nothing.
func (m *ModuleLoader) Release() {
	m.releaseOne.Do(func() { close(m.release) })
}

// Run loads every module; a failure is logged and loading goes on (a
// module the hardware does not need, e.g. 9p under vz, may fail). It closes
// Done when finished.
func (m *ModuleLoader) Run(ctx context.Context) {
	defer close(m.done)
	defer m.settle()
	then := m.then
	if then != nil {
		// Never unlocked: a thread whose state then changed must not run
		// other goroutines; it exits when Run returns.
		runtime.LockOSThread()
		if !slices.ContainsFunc(m.list, func(rel string) bool { return ModuleName(rel) == m.thenAfter }) {
			then()
			then = nil
		}
	}
	var bound <-chan time.Time
	if len(m.deferred) > 0 && m.deferBound > 0 {
		t := time.NewTimer(m.deferBound)
		defer t.Stop()
		bound = t.C
	}
	var held []string
	for _, rel := range m.list {
		if ctx.Err() != nil {
			return
		}
		name := ModuleName(rel)
		if m.deferred[name] {
			held = append(held, rel)
			continue
		}
		m.loadOne(rel, name)
		if then != nil && name == m.thenAfter {
			then()
			then = nil
		}
	}
	if len(held) > 0 {
		if bound == nil {
			m.settle()
		}
		select {
		case <-m.release:
		case <-bound:
		case <-ctx.Done():
			return
		}
	}
	for _, rel := range held {
		if ctx.Err() != nil {
			return
		}
		name := ModuleName(rel)
		m.loadOne(rel, name)
		if then != nil && name == m.thenAfter {
			then()
			then = nil
		}
	}
}

func (m *ModuleLoader) loadOne(rel, name string) {
	err := m.load(filepath.Join(m.dir, filepath.FromSlash(rel)))
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed[name] {
		m.closed[name] = true
		defer close(m.tried[name])
	}
	if err != nil && !errors.Is(err, ErrModuleLoaded) {
		m.log.Warn("load kernel module", "module", name, "err", err)
		m.failed[name] = err
		return
	}
	m.loaded = append(m.loaded, name)
}

// closedChan stands for a module that is not in the list: built into the
// kernel, or not carried; nothing to wait for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Tried returns a channel closed once the module called name (the
// kernel's name, e.g. "virtio_net") has been tried, loaded or not; at once
// for a module the list does not hold. A loader stopped by its context
// never closes it: wait on Done too. Asking for a deferred module
// releases the deferred ones (Defer).
func (m *ModuleLoader) Tried(name string) <-chan struct{} {
	if m.deferred[name] {
		m.Release()
	}
	if ch, ok := m.tried[name]; ok {
		return ch
	}
	return closedChan
}

// Settled returns a channel closed once every module has been tried
// except those Defer holds without a bound (then: once Run is done): what
// a template guest loads before it is saved.
func (m *ModuleLoader) Settled() <-chan struct{} { return m.settled }

func (m *ModuleLoader) settle() { m.settledOne.Do(func() { close(m.settled) }) }

// Loaded returns the modules loaded so far, in order.
func (m *ModuleLoader) Loaded() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.loaded...)
}

// Failed returns the modules that failed to load and why.
func (m *ModuleLoader) Failed() map[string]error {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]error, len(m.failed))
	for k, v := range m.failed {
		out[k] = v
	}
	return out
}

// Done is closed once every module has been tried; with deferred modules
// (Defer), only after their release.
func (m *ModuleLoader) Done() <-chan struct{} { return m.done }
