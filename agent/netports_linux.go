package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// How the pod network sees a guest's ports (network/vswitch): the node
// learns what each container listens on from Listeners, so connections to
// the pod's shared address reach the right VM, and tells every VM which ports
// its pod's other containers serve (SetRelays), so localhost reaches them.

const (
	// listenersPoll is how often a waiting Listeners call looks again:
	// /proc/net is a few small reads.
	listenersPoll = 500 * time.Millisecond
	listenersWait = 30 * time.Second
	maxListenWait = 5 * time.Minute
)

// listening reads the guest's listening ports, without the agent's own
// relays.
func (s *Server) listening() ([]listenPort, error) {
	var all []listenPort
	for _, t := range []struct {
		file, proto string
		v6          bool
	}{{"tcp", "TCP", false}, {"tcp6", "TCP", true}, {"udp", "UDP", false}, {"udp6", "UDP", true}} {
		f, err := os.Open(filepath.Join(s.cfg.ProcNetDir, t.file))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("read listening ports: %w", err)
		}
		ps, err := parseProcNet(f, t.proto, t.v6)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read listening ports from %s: %w", t.file, err)
		}
		all = append(all, ps...)
	}
	own := s.relays.ports()
	out := all[:0]
	for _, p := range all {
		if !(p.proto == "TCP" && own[p.port]) {
			out = append(out, p)
		}
	}
	return sortPorts(out), nil
}

// Listeners implements the long poll of the guest's listening ports.
func (s *Server) Listeners(ctx context.Context, req *api.ListenersRequest) (*api.ListenersResponse, error) {
	wait := time.Duration(req.GetWaitNs())
	if wait <= 0 {
		wait = listenersWait
	}
	wait = min(wait, maxListenWait)
	deadline := time.Now().Add(wait)
	for {
		ports, err := s.listening()
		if err != nil {
			return nil, err
		}
		v := portsVersion(ports)
		if v != req.GetKnownVersion() || !time.Now().Before(deadline) {
			resp := &api.ListenersResponse{Version: v}
			for _, p := range ports {
				resp.Ports = append(resp.Ports, &api.ListenPort{Protocol: p.proto, Port: uint32(p.port)})
			}
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		case <-time.After(min(listenersPoll, time.Until(deadline))):
		}
	}
}

// relaySet is the agent's listeners for ports siblings serve.
type relaySet struct {
	log *slog.Logger
	mu  sync.Mutex
	via netip.AddrPort // the gateway's relay
	ln  map[uint16]net.Listener
}

func (r *relaySet) ports() map[uint16]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[uint16]bool, len(r.ln))
	for p := range r.ln {
		out[p] = true
	}
	return out
}

// SetRelays implements the localhost bridge to sibling containers.
func (s *Server) SetRelays(ctx context.Context, req *api.SetRelaysRequest) (*api.SetRelaysResponse, error) {
	gw, err := netip.ParseAddr(req.GetGateway())
	if err != nil || req.GetRelayPort() == 0 || req.GetRelayPort() > 65535 {
		return nil, fmt.Errorf("set relays: gateway %q port %d: %w", req.GetGateway(), req.GetRelayPort(), ErrInvalidArgument)
	}
	want := map[uint16]bool{}
	for _, p := range req.GetTcpPorts() {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("set relays: port %d: %w", p, ErrInvalidArgument)
		}
		want[uint16(p)] = true
	}
	r := s.relays
	r.mu.Lock()
	defer r.mu.Unlock()
	r.via = netip.AddrPortFrom(gw, uint16(req.GetRelayPort()))
	for p, ln := range r.ln {
		if !want[p] {
			ln.Close()
			delete(r.ln, p)
		}
	}
	resp := &api.SetRelaysResponse{}
	for p := range want {
		if r.ln[p] != nil {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			// The container serves it itself: in one network namespace
			// the sibling could not have bound it either.
			resp.Taken = append(resp.Taken, uint32(p))
			continue
		}
		r.ln[p] = ln
		s.goSafe("relay "+strconv.Itoa(int(p)), func() { r.serve(ln, p) })
	}
	return resp, nil
}

func (r *relaySet) serve(ln net.Listener, port uint16) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go r.relay(c, port)
	}
}

// relay joins c to the sibling serving port through the gateway.
func (r *relaySet) relay(c net.Conn, port uint16) {
	defer c.Close()
	r.mu.Lock()
	via := r.via
	r.mu.Unlock()
	out, err := net.DialTimeout("tcp", via.String(), 10*time.Second)
	if err != nil {
		r.log.Warn("relay to a sibling container", "port", port, "err", err)
		return
	}
	defer out.Close()
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], port)
	if _, err := out.Write(hdr[:]); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(out, c)
		_ = out.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, out)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}
