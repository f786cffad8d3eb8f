package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// instantRuntime is a vmruntime.Runtime whose VMs cost nothing: every call
// answers at once, in memory. The churn benchmark runs the provider on it,
// so what it measures is the provider's own machinery (informers, pod
// workers, volumes, status pushes, events) and not the VMs. Images are
// always cached; a container's process runs until it is signalled or its
// VM is deleted.
type instantRuntime struct {
	mu     sync.Mutex
	vms    map[string]*instantVM
	nextIP uint32
}

var (
	_ vmruntime.Runtime = (*instantRuntime)(nil)
	_ vmruntime.VM      = (*instantVM)(nil)
)

func newInstantRuntime() *instantRuntime {
	return &instantRuntime{vms: map[string]*instantVM{}}
}

func (r *instantRuntime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, secrets []image.PullSecret, pulling func()) (vmruntime.ImageInfo, error) {
	return vmruntime.ImageInfo{
		Ref: ref, ID: ref + "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
		Cmd: []string{"sleep", "infinity"}, Size: 1 << 20,
	}, nil
}

func (r *instantRuntime) CreateVM(ctx context.Context, cfg container.VMConfig) (vmruntime.VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.vms[cfg.ID]; ok {
		return nil, fmt.Errorf("create VM %s: it exists", cfg.ID)
	}
	r.nextIP++
	// 10.250.0.0/16: addresses nothing dials (the provider has no pod
	// network here).
	ip := netip.AddrFrom4([4]byte{10, 250, byte(r.nextIP >> 8), byte(r.nextIP)})
	vm := &instantVM{rt: r, cfg: cfg, ip: ip.String(), procs: map[string]*instantProc{}, running: true}
	r.vms[cfg.ID] = vm
	return vm, nil
}

func (r *instantRuntime) VMs(ctx context.Context) ([]vmruntime.VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]vmruntime.VM, 0, len(r.vms))
	for _, vm := range r.vms {
		out = append(out, vm)
	}
	return out, nil
}

func (r *instantRuntime) Check(ctx context.Context) error { return nil }

// live is the number of VMs not deleted.
func (r *instantRuntime) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vms)
}

type instantVM struct {
	rt  *instantRuntime
	cfg container.VMConfig
	ip  string

	mu      sync.Mutex
	procs   map[string]*instantProc
	running bool
}

// instantProc is a container's process: it runs until signalled.
type instantProc struct {
	done chan struct{}
	exit container.ExitStatus
}

// end makes the process exit as killed by sig; only the first end counts.
func (p *instantProc) end(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.exit.Signal = int(sig)
	p.exit.Code = 128 + int(sig)
	p.exit.FinishedAt = time.Now()
	close(p.done)
}

func (v *instantVM) ID() string                { return v.cfg.ID }
func (v *instantVM) Labels() map[string]string { return v.cfg.Labels }
func (v *instantVM) IP() string                { return v.ip }

func (v *instantVM) Running(ctx context.Context) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.running
}

func (v *instantVM) Reset(ctx context.Context) error { return nil }

func (v *instantVM) Start(ctx context.Context, p container.ProcessConfig) (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.running {
		return time.Time{}, fmt.Errorf("start %s in VM %s: %w", p.ID, v.cfg.ID, container.ErrNotFound)
	}
	if _, ok := v.procs[p.ID]; ok {
		return time.Time{}, fmt.Errorf("start %s in VM %s: the process exists", p.ID, v.cfg.ID)
	}
	now := time.Now()
	v.procs[p.ID] = &instantProc{done: make(chan struct{}), exit: container.ExitStatus{StartedAt: now}}
	return now, nil
}

func (v *instantVM) proc(id string) (*instantProc, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.procs[id]
	if !ok {
		return nil, fmt.Errorf("process %s in VM %s: %w", id, v.cfg.ID, container.ErrNotFound)
	}
	return p, nil
}

func (v *instantVM) Wait(ctx context.Context, processID string) (container.ExitStatus, error) {
	p, err := v.proc(processID)
	if err != nil {
		return container.ExitStatus{}, err
	}
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return container.ExitStatus{}, ctx.Err()
	}
}

// Exec runs nothing and succeeds: probes and hooks pass at once.
func (v *instantVM) Exec(ctx context.Context, p container.ProcessConfig, stdio container.IO) (container.ExitStatus, error) {
	now := time.Now()
	return container.ExitStatus{StartedAt: now, FinishedAt: now}, nil
}

func (v *instantVM) Attach(ctx context.Context, processID string, stdio container.IO) error {
	_, err := v.Wait(ctx, processID)
	return err
}

func (v *instantVM) Signal(ctx context.Context, processID string, sig syscall.Signal, all bool) error {
	p, err := v.proc(processID)
	if err != nil {
		return err
	}
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL || sig == syscall.SIGINT {
		p.end(sig)
	}
	return nil
}

func (v *instantVM) WriteFiles(ctx context.Context, volume string, files []container.File) error {
	return nil
}

// ReadFile finds no file: the containers leave no termination message.
func (v *instantVM) ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	return nil, fmt.Errorf("read %s in VM %s: %w", path, v.cfg.ID, container.ErrNotFound)
}

var errNoPorts = errors.New("the instant runtime's VMs serve no ports")

func (v *instantVM) Forward(ctx context.Context, port uint16, conn io.ReadWriteCloser) error {
	conn.Close()
	return errNoPorts
}

func (v *instantVM) Stats(ctx context.Context) (container.Stats, error) {
	return container.Stats{Time: time.Now()}, nil
}

func (v *instantVM) Delete(ctx context.Context) error {
	v.mu.Lock()
	v.running = false
	for _, p := range v.procs {
		p.end(syscall.SIGKILL)
	}
	v.mu.Unlock()
	v.rt.mu.Lock()
	delete(v.rt.vms, v.cfg.ID)
	v.rt.mu.Unlock()
	return nil
}

// Listeners never changes: nothing listens. Like the real long poll it
// waits for a change up to wait.
func (v *instantVM) Listeners(ctx context.Context, known string, wait time.Duration) ([]network.Port, string, error) {
	const version = "none"
	if known != version {
		return nil, version, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, version, nil
	case <-ctx.Done():
		return nil, version, ctx.Err()
	}
}

func (v *instantVM) SetRelays(ctx context.Context, via netip.AddrPort, tcpPorts []uint16) ([]uint16, error) {
	return nil, nil
}
