package agent

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseModuleList(t *testing.T) {
	list, err := ParseModuleList(strings.NewReader("# port first\nkernel/drivers/virtio/virtio_ring.ko\n\n virtio.ko \nkernel/drivers/char/virtio_console.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/drivers/virtio/virtio_ring.ko", "virtio.ko", "kernel/drivers/char/virtio_console.ko"}
	if !slices.Equal(list, want) {
		t.Fatalf("got %v", list)
	}
	for _, bad := range []string{"/abs/x.ko", "../x.ko", "a/../../x.ko", "."} {
		if _, err := ParseModuleList(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if ModuleName("kernel/fs/overlayfs/overlay.ko") != "overlay" {
		t.Fatal(ModuleName("kernel/fs/overlayfs/overlay.ko"))
	}
}

func TestModuleLoaderLoadsInOrderAndKeepsGoing(t *testing.T) {
	var calls []string
	load := func(path string) error {
		calls = append(calls, path)
		switch filepath.Base(path) {
		case "builtin.ko":
			return ErrModuleLoaded
		case "broken.ko":
			return errors.New("unknown symbol")
		}
		return nil
	}
	m := NewModuleLoader("/lib/vkav/modules", []string{"a/virtio_ring.ko", "builtin.ko", "broken.ko", "virtio_console.ko"}, load, nil)
	select {
	case <-m.Done():
		t.Fatal("done before running")
	default:
	}
	m.Run(context.Background())
	<-m.Done()
	if !slices.Equal(calls, []string{"/lib/vkav/modules/a/virtio_ring.ko", "/lib/vkav/modules/builtin.ko", "/lib/vkav/modules/broken.ko", "/lib/vkav/modules/virtio_console.ko"}) {
		t.Fatalf("calls %v", calls)
	}
	if !slices.Equal(m.Loaded(), []string{"virtio_ring", "builtin", "virtio_console"}) {
		t.Fatalf("loaded %v", m.Loaded())
	}
	if f := m.Failed(); len(f) != 1 || f["broken"] == nil {
		t.Fatalf("failed %v", f)
	}
}

func TestModuleLoaderRunsAfterModuleBeforeTheRest(t *testing.T) {
	var events []string
	load := func(path string) error {
		events = append(events, ModuleName(path))
		return nil
	}
	for _, c := range []struct {
		name, after string
		want        []string
	}{
		{"after the port", "virtio_console", []string{"virtio_ring", "virtio_console", "then", "overlay", "fuse"}},
		{"after the last", "fuse", []string{"virtio_ring", "virtio_console", "overlay", "fuse", "then"}},
		{"not listed: first", "absent", []string{"then", "virtio_ring", "virtio_console", "overlay", "fuse"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			events = nil
			m := NewModuleLoader("/m", []string{"virtio_ring.ko", "virtio_console.ko", "overlay.ko", "fuse.ko"}, load, nil)
			m.AfterModule(c.after, func() { events = append(events, "then") })
			done := make(chan struct{})
			go func() { // Run keeps to its thread: not the test's
				defer close(done)
				m.Run(context.Background())
			}()
			<-done
			<-m.Done()
			if !slices.Equal(events, c.want) {
				t.Fatalf("events %v, want %v", events, c.want)
			}
		})
	}
}

// TestModuleLoaderTellsWhenOneModuleWasTried: a container that needs its
// disks and overlay waits for those, not for the modules after them.
func TestModuleLoaderTellsWhenOneModuleWasTried(t *testing.T) {
	release := make(chan struct{})
	load := func(path string) error {
		switch ModuleName(path) {
		case "evdev":
			<-release // a slow module at the end of the list
		case "broken":
			return errors.New("no such device")
		}
		return nil
	}
	m := NewModuleLoader("/mods", []string{"virtio_blk.ko", "broken.ko", "overlay.ko", "evdev.ko"}, load, nil)
	go m.Run(context.Background())
	for _, name := range []string{"virtio_blk", "broken", "overlay", "not_listed"} {
		select {
		case <-m.Tried(name):
		case <-m.Done():
			t.Fatalf("the loader finished before %s was reported tried", name)
		}
	}
	select {
	case <-m.Tried("evdev"):
		t.Fatal("evdev reported tried while its load still runs")
	case <-m.Done():
		t.Fatal("Done before the last module loaded")
	default:
	}
	close(release)
	<-m.Done()
	select {
	case <-m.Tried("evdev"):
	default:
		t.Fatal("evdev not reported tried after Done")
	}
}

// TestModuleLoaderDefersModulesUntilReleased: the deferred modules load
// after all the others, in their order, and only once released.
func TestModuleLoaderDefersModulesUntilReleased(t *testing.T) {
	loaded := make(chan string, 10)
	load := func(path string) error {
		loaded <- ModuleName(path)
		return nil
	}
	m := NewModuleLoader("/m", []string{"virtio_console.ko", "vsock.ko", "virtio_blk.ko", "button.ko", "overlay.ko"}, load, nil)
	m.Defer(time.Hour, "vsock", "button")
	go m.Run(context.Background())
	var got []string
	for range 3 {
		got = append(got, <-loaded)
	}
	if !slices.Equal(got, []string{"virtio_console", "virtio_blk", "overlay"}) {
		t.Fatalf("loaded first %v, want the modules that are not deferred, in order", got)
	}
	select {
	case name := <-loaded:
		t.Fatalf("%s loaded before the release", name)
	case <-m.Done():
		t.Fatal("Done before the release")
	case <-m.Settled():
		t.Fatal("Settled before the release of modules deferred with a bound")
	case <-time.After(50 * time.Millisecond):
	}
	m.Release()
	m.Release() // twice is harmless
	<-m.Done()
	close(loaded)
	got = nil
	for name := range loaded {
		got = append(got, name)
	}
	if !slices.Equal(got, []string{"vsock", "button"}) {
		t.Fatalf("loaded after the release %v, want the deferred modules in order", got)
	}
}

// TestModuleLoaderReleasesDeferredModulesWhenAskedOrAfterTheBound: a
// container with shares asks for virtiofs, which must not wait for the
// release; with nobody asking, the bound releases them.
func TestModuleLoaderReleasesDeferredModulesWhenAskedOrAfterTheBound(t *testing.T) {
	list := []string{"virtio_blk.ko", "fuse.ko", "virtiofs.ko", "overlay.ko"}
	load := func(string) error { return nil }

	m := NewModuleLoader("/m", list, load, nil)
	m.Defer(time.Hour, "fuse", "virtiofs")
	go m.Run(context.Background())
	select {
	case <-m.Tried("virtiofs"):
	case <-time.After(10 * time.Second):
		t.Fatal("virtiofs, deferred, was not loaded when asked for")
	}
	<-m.Done()

	m = NewModuleLoader("/m", list, load, nil)
	m.Defer(20*time.Millisecond, "fuse", "virtiofs")
	go m.Run(context.Background())
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the deferred modules did not load after their bound")
	}
	if !slices.Equal(m.Loaded(), []string{"virtio_blk", "overlay", "fuse", "virtiofs"}) {
		t.Fatalf("loaded %v", m.Loaded())
	}
}

// TestModuleLoaderHoldsModulesWithoutABoundUntilAsked: a template guest
// loads everything but the held drivers, says so (Settled) and binds them
// only when Setup asks, in the machine resumed from the template.
func TestModuleLoaderHoldsModulesWithoutABoundUntilAsked(t *testing.T) {
	list := []string{"virtio_console.ko", "virtio_blk.ko", "net_failover.ko", "virtio_net.ko", "virtio_rng.ko"}
	var mu sync.Mutex
	var order []string
	load := func(path string) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, ModuleName(path))
		return nil
	}
	m := NewModuleLoader("/m", list, load, nil)
	m.Defer(0, "virtio_blk", "virtio_net")
	go m.Run(context.Background())
	select {
	case <-m.Settled():
	case <-time.After(10 * time.Second):
		t.Fatal("never settled with only held modules left")
	}
	if got := m.Loaded(); !slices.Equal(got, []string{"virtio_console", "net_failover", "virtio_rng"}) {
		t.Fatalf("settled with %v loaded, want all but the held modules", got)
	}
	select {
	case <-m.Done():
		t.Fatal("Done while modules are held")
	case <-time.After(50 * time.Millisecond): // no bound: nothing but asking releases them
	}
	select {
	case <-m.Tried("virtio_net"):
	case <-time.After(10 * time.Second):
		t.Fatal("a held module was not loaded when asked for")
	}
	<-m.Done()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{"virtio_console", "net_failover", "virtio_rng", "virtio_blk", "virtio_net"}) {
		t.Fatalf("load order %v", order)
	}
}
