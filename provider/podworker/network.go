package podworker

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// A pod's containers share its address, one VM each (network/vswitch). For
// a pod of several containers the worker watches what each VM's agent finds
// listening, tells the switch (so connections to the pod's address reach
// the VM that serves the port) and tells every VM which ports its siblings
// serve (so localhost reaches them through the gateway's relay). A pod of
// one container needs neither.

// listenersWait is how long one Listeners long poll waits for a change.
const listenersWait = 30 * time.Second

// podPorts is what each VM of the pod serves.
type podPorts struct {
	w  *Worker
	mu sync.Mutex
	// vms by container name.
	vms map[string]*vmPorts
}

type vmPorts struct {
	vm        vmruntime.VM
	declared  []network.Port
	listening []network.Port
	relays    []uint16
	stop      context.CancelFunc
}

// multi reports whether the pod's VMs share its address with siblings.
func (w *Worker) multi() bool {
	pod := w.Pod()
	return len(pod.Spec.InitContainers)+len(pod.Spec.Containers) > 1
}

// watchPorts starts following a container's new VM.
func (pp *podPorts) watchPorts(name string, vm vmruntime.VM) {
	w := pp.w
	if w.cfg.Network == nil || !w.multi() {
		return
	}
	ctx, cancel := context.WithCancel(w.runCtx)
	pp.mu.Lock()
	if old := pp.vms[name]; old != nil {
		old.stop()
	}
	pp.vms[name] = &vmPorts{vm: vm, declared: podnet.Placement(w.Pod(), name).Ports, stop: cancel}
	pp.mu.Unlock()
	pp.updateRelays(ctx)
	go pp.follow(ctx, name, vm)
}

// forget stops following a container's VM (deleted).
func (pp *podPorts) forget(name string) {
	pp.mu.Lock()
	v := pp.vms[name]
	delete(pp.vms, name)
	pp.mu.Unlock()
	if v != nil {
		v.stop()
		pp.updateRelays(pp.w.runCtx)
	}
}

// follow long-polls the VM's listening ports until ctx ends.
func (pp *podPorts) follow(ctx context.Context, name string, vm vmruntime.VM) {
	w := pp.w
	version := ""
	for ctx.Err() == nil {
		ports, v, err := vm.Listeners(ctx, version, listenersWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Debug("listening ports of a container", "container", name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-w.cfg.Clock.After(5 * time.Second):
			}
			continue
		}
		if v == version {
			continue
		}
		version = v
		if err := w.cfg.Network.SetListeners(ctx, vm.ID(), ports); err != nil && ctx.Err() == nil {
			w.log.Warn("tell the switch a container's listening ports", "container", name, "err", err)
		}
		pp.mu.Lock()
		if cur := pp.vms[name]; cur != nil && cur.vm == vm {
			cur.listening = ports
		}
		pp.mu.Unlock()
		pp.updateRelays(ctx)
	}
}

// updateRelays gives every VM the ports its siblings serve.
func (pp *podPorts) updateRelays(ctx context.Context) {
	w := pp.w
	pp.mu.Lock()
	var in []podnet.VMPorts
	byID := map[string]*vmPorts{}
	for _, v := range pp.vms {
		in = append(in, podnet.VMPorts{ID: v.vm.ID(), Declared: v.declared, Listening: v.listening})
		byID[v.vm.ID()] = v
	}
	want := podnet.Relays(in)
	var changed []*vmPorts
	var sets [][]uint16
	for id, ports := range want {
		v := byID[id]
		if !slices.Equal(v.relays, ports) {
			v.relays = ports
			changed = append(changed, v)
			sets = append(sets, ports)
		}
	}
	pp.mu.Unlock()
	via := netip.AddrPortFrom(w.cfg.Network.Gateway(), vswitch.RelayPort)
	for i, v := range changed {
		taken, err := v.vm.SetRelays(ctx, via, sets[i])
		if err != nil && ctx.Err() == nil {
			w.log.Warn("relay localhost to sibling containers", "vm", v.vm.ID(), "err", err)
		}
		if len(taken) > 0 {
			w.log.Info("ports a sibling serves are taken in this container", "vm", v.vm.ID(), "ports", taken)
		}
	}
}

// dialer reaches the pod's containers from the node: through the pod
// network for the pod's own address, directly for anything else (a probe's
// host field).
func (w *Worker) dialer() func(ctx context.Context, netw, addr string) (net.Conn, error) {
	return func(ctx context.Context, netw, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && w.cfg.Network != nil && host == w.PodIP() {
			return w.cfg.Network.DialContext(ctx, netw, addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, netw, addr)
	}
}

// releaseNetwork frees the pod's address once its VMs are gone.
func (w *Worker) releaseNetwork(ctx context.Context) {
	if w.cfg.Network == nil {
		return
	}
	if err := w.cfg.Network.ReleasePod(ctx, podnet.PodKey(w.uid)); err != nil {
		w.log.Warn("release the pod's address", "err", err)
	}
}

// ServingContainer is the container that serves TCP port: one that declares
// it, else one whose VM was found listening on it; "" if none. The pod
// network's router picks the same VM for the pod's address.
func (w *Worker) ServingContainer(port uint16) string {
	pod := w.Pod()
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			for _, cp := range c.Ports {
				if uint16(cp.ContainerPort) == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
					return c.Name
				}
			}
		}
	}
	w.ports.mu.Lock()
	defer w.ports.mu.Unlock()
	for name, v := range w.ports.vms {
		for _, p := range v.listening {
			if p.Port == port && p.Protocol == "TCP" {
				return name
			}
		}
	}
	return ""
}
