// Package switchnet is the node's pod network as network.Network: pod
// addresses from the state root's allocator, every VM plugged into the
// node's user-space switch (network/vswitch). It needs no root, no kernel
// bridge and no vmnet, and is the same on Linux (QEMU) and macOS (vz).
//
// The switch runs as its own process, started on first use by whoever opens
// the network (the node or the CLI) and shared by both; it outlives them, so
// pods keep their network while the node restarts. Check restarts it if it
// has died, and the shims plug their VMs in again.
package switchnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	"github.com/vk-applevm/vk-applevm/vm"
)

// DefaultSubnet holds the pods of a node: 1021 addresses.
var DefaultSubnet = netip.MustParsePrefix("10.213.0.0/22")

// DefaultMTU is the pod network's MTU, as passt and pasta choose theirs:
// the switch's cable carries one frame per datagram with no segmentation
// offload, so every frame costs the guest (emulated, under TCG) and the
// switch a system call and a checksum; 64 KiB frames cut that forty-fold.
// The gateway terminates every flow that leaves the node, so the large
// MTU never reaches a real wire.
const DefaultMTU = 65520

// Config opens a node's network.
type Config struct {
	// StateDir is the state root; the network lives in StateDir/network.
	StateDir string
	// Subnet for the pods; default DefaultSubnet.
	Subnet netip.Prefix
	// MTU of the pod network; default DefaultMTU.
	MTU int
	// AllowHostLoopback lets pods reach services on the host's 127.0.0.1
	// at the gateway's address.
	AllowHostLoopback bool
	// EnforceHostLoopback refuses a switch already running with the other
	// AllowHostLoopback (the node: its flag is a security setting); without
	// it (the CLI) the running switch's policy is taken as it is.
	EnforceHostLoopback bool
	// SwitchCommand starts the switch process: the vk-applevm binary and
	// its arguments (`switch --dir DIR`). Empty runs the switch inside this
	// process instead, for as long as it lives (tests).
	SwitchCommand []string
	// Log receives the in-process switch's messages.
	Log *slog.Logger
}

// Network is a node's pod network.
type Network struct {
	cfg    Config
	dir    string
	alloc  *network.Allocator
	sw     *vswitch.Client
	swCfg  vswitch.Config
	gw     netip.Addr
	inProc *inProcess

	mu     sync.Mutex
	closed bool
}

var _ network.Network = (*Network)(nil)

type inProcess struct {
	cancel context.CancelFunc
	done   chan error
}

// SwitchDir is the directory of a state root's switch.
func SwitchDir(stateDir string) string { return filepath.Join(stateDir, "network", "switch") }

// Open opens (and if needed starts) the network of cfg.StateDir.
func Open(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("pod network: no state directory")
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	alloc, err := network.NewAllocator(filepath.Join(cfg.StateDir, "network"), cfg.Subnet)
	if err != nil {
		return nil, err
	}
	n := &Network{
		cfg: cfg, dir: SwitchDir(cfg.StateDir), alloc: alloc, gw: network.Gateway(cfg.Subnet),
		swCfg: vswitch.Config{Subnet: cfg.Subnet, Gateway: network.Gateway(cfg.Subnet), MTU: cfg.MTU, AllowHostLoopback: cfg.AllowHostLoopback},
	}
	if err := n.ensureSwitch(ctx); err != nil {
		return nil, err
	}
	if cfg.EnforceHostLoopback {
		st, err := n.sw.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("pod network switch status: %w", err)
		}
		if st.AllowHostLoopback != cfg.AllowHostLoopback {
			n.Close(ctx)
			return nil, fmt.Errorf("the pod network's switch (pid %d) runs with allowHostLoopback=%v, not %v: stop it (kill %d; its VMs plug into the next one) and start again",
				st.Pid, st.AllowHostLoopback, cfg.AllowHostLoopback, st.Pid)
		}
	}
	return n, nil
}

// ensureSwitch connects to the switch, starting it when none answers.
func (n *Network) ensureSwitch(ctx context.Context) error {
	if len(n.cfg.SwitchCommand) > 0 {
		c, err := vswitch.Ensure(ctx, n.dir, n.swCfg, n.cfg.SwitchCommand)
		if err != nil {
			return fmt.Errorf("start the pod network's switch: %w", err)
		}
		n.sw = c
		return nil
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("switch directory: %w", err)
	}
	c := vswitch.NewClient(n.dir)
	if _, err := c.Status(ctx); err == nil {
		n.sw = c
		return nil
	}
	if err := vswitch.WriteConfig(n.dir, n.swCfg); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- vswitch.Run(rctx, n.dir, n.cfg.Log) }()
	if err := c.WaitReady(ctx); err != nil {
		cancel()
		return err
	}
	n.sw, n.inProc = c, p
	return nil
}

// Switch is the client of the network's switch.
func (n *Network) Switch() *vswitch.Client { return n.sw }

// Gateway is the pods' default route and DNS server.
func (n *Network) Gateway() netip.Addr { return n.gw }

// Subnet holds the pods' addresses.
func (n *Network) Subnet() netip.Prefix { return n.cfg.Subnet }

func (n *Network) usable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return network.ErrClosed
	}
	return nil
}

// Attach implements network.Network.
func (n *Network) Attach(ctx context.Context, id string, opts network.AttachOptions) (*network.Endpoint, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	if err := network.ValidateID(id); err != nil {
		return nil, err
	}
	if opts.Pod == "" {
		opts.Pod = id
	}
	ip, err := n.alloc.Acquire(ctx, opts.Pod)
	if err != nil {
		return nil, fmt.Errorf("address of pod %s: %w", opts.Pod, err)
	}
	mac := network.MACFor(id).String()
	ep := vswitch.Endpoint{ID: id, MAC: mac, IP: ip, Pod: opts.Pod, Slot: opts.Slot, Slots: opts.Slots}
	for _, p := range opts.Ports {
		ep.Ports = append(ep.Ports, vswitch.Port{Protocol: strings.ToUpper(p.Protocol), Port: p.Port})
	}
	if err := n.sw.SetEndpoint(ctx, ep); err != nil {
		return nil, fmt.Errorf("plug VM %s into the switch: %w", id, err)
	}
	first, last := vswitch.EphemeralRange(opts.Slot, opts.Slots)
	return &network.Endpoint{
		ID:  id,
		NIC: vm.NIC{MAC: mac, MTU: n.cfg.MTU, Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: n.sw.PortsSocket()}},
		Guest: network.GuestConfig{
			MAC: mac, Address: netip.PrefixFrom(ip, 32), Gateway: n.gw, OnLinkGateway: true, MTU: n.cfg.MTU,
			DNS:       []netip.Addr{n.gw},
			PortRange: fmt.Sprintf("%d %d", first, last),
		},
		IP: ip,
	}, nil
}

// Detach implements network.Network.
func (n *Network) Detach(ctx context.Context, id string) error {
	if err := n.sw.RemoveEndpoint(ctx, id); err != nil {
		return fmt.Errorf("unplug VM %s: %w", id, err)
	}
	return nil
}

// ReleasePod implements network.Network.
func (n *Network) ReleasePod(ctx context.Context, pod string) error {
	st, err := n.sw.Status(ctx)
	if err != nil {
		return fmt.Errorf("release the address of pod %s: %w", pod, err)
	}
	for _, ep := range st.Endpoints {
		if ep.Pod == pod {
			return fmt.Errorf("release the address of pod %s: VM %s still uses it", pod, ep.ID)
		}
	}
	return n.alloc.Release(ctx, pod)
}

// Check implements network.Network: the switch answers, restarted if it had
// died (its VMs plug in again by themselves).
func (n *Network) Check(ctx context.Context) error {
	if err := n.usable(); err != nil {
		return err
	}
	_, err := n.sw.Status(ctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// No answer in time is a slow switch (a loaded host), not a dead
		// one: a dead one's socket refuses at once. Starting another
		// would only fail on the running one's lock.
		return fmt.Errorf("the pod network's switch did not answer: %w", err)
	}
	if err := n.ensureSwitch(ctx); err != nil {
		return fmt.Errorf("the pod network's switch is down and does not restart: %w", err)
	}
	n.cfg.Log.Warn("the pod network's switch had stopped; restarted it")
	return nil
}

// SetListeners tells the switch which ports VM id was found listening on.
func (n *Network) SetListeners(ctx context.Context, id string, ports []network.Port) error {
	out := make([]vswitch.Port, 0, len(ports))
	for _, p := range ports {
		out = append(out, vswitch.Port{Protocol: strings.ToUpper(p.Protocol), Port: p.Port})
	}
	return n.sw.SetListeners(ctx, id, out)
}

// SetServices replaces the switch's Service table (cluster DNS, Service
// addresses).
func (n *Network) SetServices(ctx context.Context, t vswitch.ServiceTable) error {
	return n.sw.SetServices(ctx, t)
}

// SetHostPorts replaces the ports owner publishes on the host.
func (n *Network) SetHostPorts(ctx context.Context, owner string, hps []vswitch.HostPort) error {
	return n.sw.SetHostPorts(ctx, owner, hps)
}

// Publish implements network.Publisher: ports of a pod published on the
// host by owner; nil withdraws them.
func (n *Network) Publish(ctx context.Context, owner string, podIP netip.Addr, ports []network.PublishedPort) error {
	var hps []vswitch.HostPort
	for _, p := range ports {
		hps = append(hps, vswitch.HostPort{HostIP: p.HostIP, HostPort: p.HostPort, Protocol: strings.ToUpper(p.Protocol), PodIP: podIP, Port: p.Port})
	}
	return n.sw.SetHostPorts(ctx, owner, hps)
}

// DialContext connects to addr ("ip:port") inside the pod network, as the
// node's probes and a pod on another node would.
func (n *Network) DialContext(ctx context.Context, netw, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s in the pod network: %w", addr, err)
	}
	return n.sw.Dial(ctx, netw, ap)
}

// Close implements network.Network: the switch keeps running (unless it
// runs inside this process).
func (n *Network) Close(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.sw.Close()
	if n.inProc != nil {
		n.inProc.cancel()
		<-n.inProc.done
	}
	return nil
}

// Teardown implements network.Network: it stops the switch and removes the
// network's state.
func (n *Network) Teardown(ctx context.Context) error {
	inProc := n.inProc != nil
	if err := n.Close(ctx); err != nil {
		return err
	}
	if !inProc {
		if err := Stop(ctx, n.cfg.StateDir); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Join(n.cfg.StateDir, "network"))
}

// Stop stops the switch of a state root, if one runs, and waits for it to
// exit (the VMs' network stops with it: stop them first).
func Stop(ctx context.Context, stateDir string) error {
	c := vswitch.NewClient(SwitchDir(stateDir))
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return nil // none runs
	}
	p, err := os.FindProcess(st.Pid)
	if err == nil {
		err = p.Signal(syscall.SIGTERM)
	}
	if err != nil {
		return fmt.Errorf("stop the switch (pid %d): %w", st.Pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := c.Status(ctx); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the switch (pid %d) did not stop: %w", st.Pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Watch checks the switch every interval until ctx ends, restarting it if
// it died: the node runs it so pods lose their network for about that long
// when the switch crashes.
func (n *Network) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := n.Check(cctx); err != nil && ctx.Err() == nil {
				n.cfg.Log.Error("pod network", "err", err)
			}
			cancel()
		}
	}
}
