package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccelEnvOverrides(t *testing.T) {
	for env, want := range map[string]Accel{"kvm": AccelKVM, "tcg": AccelTCG} {
		t.Setenv(AccelEnv, env)
		// A probe image that does not exist proves no probe runs.
		d := New(Options{Probe: ProbeImage{Kernel: "/nonexistent", Initrd: "/nonexistent"}, CacheDir: t.TempDir(), Logger: testLogger})
		v, err := d.Accelerator(context.Background())
		if err != nil || v.Accel != want {
			t.Fatalf("%s=%s: %+v, %v", AccelEnv, env, v, err)
		}
	}
	t.Setenv(AccelEnv, "hvf")
	if _, err := New(Options{Logger: testLogger}).Accelerator(context.Background()); err == nil {
		t.Fatalf("%s=hvf was accepted", AccelEnv)
	}
}

func TestAccelWithoutProbeImageIsTCG(t *testing.T) {
	t.Setenv(AccelEnv, "")
	v, err := New(Options{CacheDir: t.TempDir(), Logger: testLogger}).Accelerator(context.Background())
	if err != nil || v.Accel != AccelTCG {
		t.Fatalf("no probe image: %+v, %v; want TCG", v, err)
	}
}

// TestKVMProbeVerdictIsCached runs the real probe (on this CI host nested
// KVM hangs, so the verdict is TCG after the timeout; on a host with
// working KVM it is KVM) and checks that a second driver reuses it.
func TestKVMProbeVerdictIsCached(t *testing.T) {
	t.Setenv(AccelEnv, "")
	b := floorBundle(t)
	if _, err := os.Stat("/dev/kvm"); err != nil {
		v, err := New(Options{Probe: ProbeImage{b.Kernel, b.FloorInitrd}, Logger: testLogger}).Accelerator(context.Background())
		if err != nil || v.Accel != AccelTCG || v.Reason != "no /dev/kvm" {
			t.Fatalf("without /dev/kvm: %+v, %v", v, err)
		}
		return
	}
	cache := t.TempDir()
	opts := Options{Probe: ProbeImage{b.Kernel, b.FloorInitrd}, CacheDir: cache, ProbeTimeout: 6 * time.Second, Logger: testLogger}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, err := New(opts).Accelerator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe verdict: %+v", first)
	if !strings.Contains(first.Reason, "KVM probe boot") {
		t.Fatalf("verdict without a probe reason: %+v", first)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "accel-*.json"))
	if len(files) != 1 {
		t.Fatalf("cache holds %v, want one verdict file", files)
	}
	start := time.Now()
	second, err := New(opts).Accelerator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Accel != first.Accel || !strings.HasSuffix(second.Reason, "(cached)") {
		t.Fatalf("second verdict %+v, want %s from the cache", second, first.Accel)
	}
	// Not a timing assertion on the VM: a cache hit must not boot at all,
	// and a boot takes seconds; one second is a wide margin for a file read.
	if time.Since(start) > time.Second {
		t.Fatalf("cached verdict took %s: did it boot again?", time.Since(start))
	}
}
