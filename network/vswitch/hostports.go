package vswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
)

// HostPort publishes a pod's port on the host, as a pod's hostPort does on a
// kubelet node (and `vk-applevm run -p`).
type HostPort struct {
	// HostIP is the host address to listen on (the node's address).
	HostIP   netip.Addr `json:"hostIP"`
	HostPort uint16     `json:"hostPort"`
	Protocol string     `json:"protocol"` // TCP or UDP
	// PodIP and Port are where connections go, inside the pod network.
	PodIP netip.Addr `json:"podIP"`
	Port  uint16     `json:"port"`
}

func (h HostPort) validate() error {
	if !h.HostIP.IsValid() || h.HostPort == 0 || !h.PodIP.Is4() || h.Port == 0 {
		return fmt.Errorf("host port %+v: host address, host port, pod address and port are all needed", h)
	}
	_, err := Port{Protocol: h.Protocol, Port: h.Port}.key()
	return err
}

// hostPorts keeps one host listener per published port.
type hostPorts struct {
	dial func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
	log  *slog.Logger

	mu   sync.Mutex
	open map[string]*published // by hostPortKey
}

type published struct {
	spec HostPort
	stop io.Closer
}

func newHostPorts(dial func(context.Context, string, netip.AddrPort) (net.Conn, error), log *slog.Logger) *hostPorts {
	return &hostPorts{dial: dial, log: log, open: map[string]*published{}}
}

// set makes the listeners match want: it closes the ones no longer wanted
// and opens the new ones. Listeners that cannot be opened (the port is taken
// on the host) are reported; the others still work.
func (h *hostPorts) set(want []HostPort) error {
	wanted := map[string]HostPort{}
	for _, hp := range want {
		if err := hp.validate(); err != nil {
			return err
		}
		k := hostPortKey(hp)
		if prev, dup := wanted[k]; dup && prev != hp {
			return fmt.Errorf("host port %s is published twice", k)
		}
		wanted[k] = hp
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, p := range h.open {
		if hp, ok := wanted[k]; !ok || hp != p.spec {
			p.stop.Close()
			delete(h.open, k)
		}
	}
	var errs []error
	for k, hp := range wanted {
		if h.open[k] != nil {
			continue
		}
		stop, err := h.listen(hp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.open[k] = &published{spec: hp, stop: stop}
	}
	return errors.Join(errs...)
}

// list returns the open listeners' specs, sorted.
func (h *hostPorts) list() []HostPort {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HostPort, 0, len(h.open))
	for _, p := range h.open {
		out = append(out, p.spec)
	}
	sort.Slice(out, func(i, j int) bool { return hostPortKey(out[i]) < hostPortKey(out[j]) })
	return out
}

func (h *hostPorts) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, p := range h.open {
		p.stop.Close()
		delete(h.open, k)
	}
}

func (h *hostPorts) listen(hp HostPort) (io.Closer, error) {
	addr := netip.AddrPortFrom(hp.HostIP, hp.HostPort).String()
	to := netip.AddrPortFrom(hp.PodIP, hp.Port)
	k, _ := Port{Protocol: hp.Protocol, Port: hp.Port}.key()
	if k.proto == ipProtoUDP {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("publish udp %s: %w", addr, err)
		}
		p, _ := forwarder.NewUDPProxy(pc.(*net.UDPConn), func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
			defer cancel()
			return h.dial(ctx, "udp", to)
		})
		go p.Run()
		return p, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("publish tcp %s: %w", addr, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
				out, err := h.dial(ctx, "tcp", to)
				cancel()
				if err != nil {
					h.log.Debug("host port: dial the pod", "to", to, "err", err)
					c.Close()
					return
				}
				splice(c, out)
			}()
		}
	}()
	return ln, nil
}
