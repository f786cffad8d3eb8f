//go:build linux

package main

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// TestPodBenchAgainstInstantVMs runs the pod benchmark's machinery
// (virtual-kubelet's pod controller, the provider, the in-memory API
// server) over VMs that start at once: pods reach Running and their VMs
// are gone after the deletion, so `make bench` measures, not debugs.
func TestPodBenchAgainstInstantVMs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := &instantRuntime{vms: map[string]*instantVM{}}
	b, err := newPodBench(ctx, rt, nil, t.TempDir(), "busybox", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 5} {
		ds, err := b.pods(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != n {
			t.Fatalf("%d start times for %d pods", len(ds), n)
		}
		for _, d := range ds {
			if d <= 0 || d > 30*time.Second {
				t.Fatalf("start times %v", ds)
			}
		}
		if left, _ := rt.VMs(ctx); len(left) != 0 {
			t.Fatalf("%d VMs left after the pods' deletion", len(left))
		}
	}
}

// instantRuntime is a vmruntime.Runtime whose VMs start and stop at once.
type instantRuntime struct {
	mu  sync.Mutex
	vms map[string]*instantVM
}

func (r *instantRuntime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, secrets []image.PullSecret, pulling func()) (vmruntime.ImageInfo, error) {
	return vmruntime.ImageInfo{Ref: ref, ID: ref + "@sha256:00"}, nil
}

func (r *instantRuntime) CreateVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vm := &instantVM{rt: r, cfg: cfg, exited: map[string]chan struct{}{}}
	r.vms[cfg.ID] = vm
	return vm, nil
}

func (r *instantRuntime) VMs(ctx context.Context) ([]vmruntime.VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []vmruntime.VM
	for _, vm := range r.vms {
		out = append(out, vm)
	}
	return out, nil
}

func (r *instantRuntime) Check(ctx context.Context) error { return nil }

// instantVM runs processes that last until signalled.
type instantVM struct {
	vmruntime.VM // what the benchmark's pods never use panics
	rt           *instantRuntime
	cfg          container.VMConfig
	mu           sync.Mutex
	exited       map[string]chan struct{}
}

func (v *instantVM) ID() string                       { return v.cfg.ID }
func (v *instantVM) Labels() map[string]string        { return v.cfg.Labels }
func (v *instantVM) IP() string                       { return "10.88.0.2" }
func (v *instantVM) Running(ctx context.Context) bool { return true }
func (v *instantVM) Reset(ctx context.Context) error  { return nil }
func (v *instantVM) Stats(ctx context.Context) (container.Stats, error) {
	return container.Stats{}, nil
}

func (v *instantVM) Start(ctx context.Context, p container.ProcessConfig) (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.exited[p.ID] = make(chan struct{})
	return time.Now(), nil
}

func (v *instantVM) Wait(ctx context.Context, id string) (container.ExitStatus, error) {
	v.mu.Lock()
	ch := v.exited[id]
	v.mu.Unlock()
	if ch == nil {
		return container.ExitStatus{}, errors.New("no such process")
	}
	select {
	case <-ch:
		return container.ExitStatus{Code: 137, Signal: int(syscall.SIGKILL)}, nil
	case <-ctx.Done():
		return container.ExitStatus{}, ctx.Err()
	}
}

func (v *instantVM) Signal(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for pid, ch := range v.exited {
		if pid == id || all {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}
	return nil
}

func (v *instantVM) Delete(ctx context.Context) error {
	_ = v.Signal(ctx, "", syscall.SIGKILL, true)
	v.rt.mu.Lock()
	defer v.rt.mu.Unlock()
	delete(v.rt.vms, v.cfg.ID)
	return nil
}

func (v *instantVM) Listeners(ctx context.Context, known string, wait time.Duration) ([]network.Port, string, error) {
	if known == "" {
		return nil, "0", nil
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
	}
	return nil, known, nil
}

func (v *instantVM) SetRelays(ctx context.Context, via netip.AddrPort, ports []uint16) ([]uint16, error) {
	return nil, nil
}

func (v *instantVM) WriteFiles(ctx context.Context, volume string, files []container.File) error {
	return nil
}
