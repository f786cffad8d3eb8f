// Package vswitch is the node's pod network: a user-space router and
// gateway that every VM of the node plugs into, on Linux (QEMU) and macOS
// (vz) alike. It runs as its own process (`vk-applevm switch`), so pods keep
// their network while the node restarts.
//
// The parts:
//   - Router (router.go, demux.go): one port per VM, reached over a datagram
//     socket pair (network/switchport). It answers ARP, drops frames whose
//     source MAC or IP is not the VM's own, routes between the node's pods
//     and shares each pod's address among its VMs (one VM per container).
//   - Gateway (gateway.go): gVisor's netstack, joined to the router with
//     gvisor-tap-vsock's link endpoint, at the subnet's first address, the
//     pods' default route: cluster DNS (dns.go), Service addresses forwarded
//     to an endpoint (services.go), the relay between a pod's containers,
//     and outbound connections dialled from the host.
//   - hostPorts (hostports.go): pods' hostPorts published on the host.
//   - The switch (this file) serves two unix sockets in its directory:
//     ctl.sock, an HTTP API for the node and the CLI (client.go), and
//     ports.sock, where shims plug their VMs in. Its state (endpoints,
//     listeners, Services, host ports) is saved in state.json after every
//     change and loaded at start, so a restarted switch carries on and the
//     shims plug their VMs in again.
package vswitch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/renameio/v2"
	"github.com/vk-applevm/vk-applevm/internal/sockpath"
	"github.com/vk-applevm/vk-applevm/network/switchport"
)

// Files in the switch's directory.
const (
	CtlSocket   = "ctl.sock"
	PortsSocket = "ports.sock"
	ConfigFile  = "config.json"
	stateFile   = "state.json"
	lockFile    = "switch.lock"
	pidFile     = "switch.pid"
)

// Config is a switch's configuration, kept in config.json in its directory
// by whoever starts it.
type Config struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	MTU     int          `json:"mtu,omitempty"`
	// AllowHostLoopback: see GatewayConfig.
	AllowHostLoopback bool `json:"allowHostLoopback,omitempty"`
	// ResolvConf lists the host's resolvers; default /etc/resolv.conf.
	ResolvConf string `json:"resolvConf,omitempty"`
}

// GatewayMAC and PodSideMAC are fixed: they live only on the virtual
// network, and a restarted switch must keep the gateway's MAC the guests
// have in their ARP caches.
var (
	GatewayMAC = net.HardwareAddr{0x02, 0x76, 0x6b, 0x61, 0x76, 0x01}
	PodSideMAC = net.HardwareAddr{0x02, 0x76, 0x6b, 0x61, 0x76, 0x02}
)

// ErrRunning is returned when another switch holds the directory.
var ErrRunning = errors.New("a switch is already running in this directory")

// state is what survives a restart of the switch.
type state struct {
	Endpoints []Endpoint        `json:"endpoints,omitempty"`
	Listeners map[string][]Port `json:"listeners,omitempty"`
	Services  *ServiceTable     `json:"services,omitempty"`
	// HostPorts are the published ports by owner ("node", a CLI
	// container's id).
	HostPorts map[string][]HostPort `json:"hostPorts,omitempty"`
}

// Switch is a running switch.
type Switch struct {
	dir   string
	cfg   Config
	log   *slog.Logger
	gw    *Gateway
	r     *Router
	hp    *hostPorts
	start time.Time

	mu        sync.Mutex // serialises changes and their saving
	listeners map[string][]Port
	services  *ServiceTable
	hostPorts map[string][]HostPort // by owner
}

// Run serves the switch of dir until ctx ends.
func Run(ctx context.Context, dir string, log *slog.Logger) error {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := newSwitch(dir, cfg, log)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.restore(); err != nil {
		log.Error("restore the switch's state; starting empty", "err", err)
	}
	ctl, err := listenUnix(filepath.Join(dir, CtlSocket))
	if err != nil {
		return err
	}
	ports, err := listenUnix(filepath.Join(dir, PortsSocket))
	if err != nil {
		ctl.Close()
		return err
	}
	_ = os.WriteFile(filepath.Join(dir, pidFile), []byte(fmt.Sprintln(os.Getpid())), 0o600)
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ctl)
	}()
	go func() {
		defer wg.Done()
		s.servePorts(ctx, ports)
	}()
	log.Info("switch serving", "dir", dir, "subnet", cfg.Subnet, "gateway", cfg.Gateway)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	ports.Close()
	wg.Wait()
	return nil
}

func newSwitch(dir string, cfg Config, log *slog.Logger) (*Switch, error) {
	if !cfg.Gateway.IsValid() {
		cfg.Gateway = cfg.Subnet.Masked().Addr().Next()
	}
	resolv := cfg.ResolvConf
	if resolv == "" {
		resolv = "/etc/resolv.conf"
	}
	gw, r, err := newGateway(GatewayConfig{MTU: cfg.MTU, Upstreams: hostResolvers(resolv), AllowHostLoopback: cfg.AllowHostLoopback},
		RouterConfig{Subnet: cfg.Subnet, Gateway: cfg.Gateway, GatewayMAC: GatewayMAC, PodSideMAC: PodSideMAC}, log)
	if err != nil {
		return nil, err
	}
	if err := gw.start(); err != nil {
		gw.close()
		return nil, err
	}
	s := &Switch{dir: dir, cfg: cfg, log: log, gw: gw, r: r, start: time.Now(), listeners: map[string][]Port{}, hostPorts: map[string][]HostPort{}}
	s.hp = newHostPorts(gw.DialInside, log)
	return s, nil
}

func (s *Switch) close() {
	s.hp.closeAll()
	s.gw.close()
}

// ReadConfig reads dir's config.json.
func ReadConfig(dir string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return cfg, fmt.Errorf("read switch config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("read switch config %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return cfg, fmt.Errorf("switch config: subnet %v must be IPv4", cfg.Subnet)
	}
	return cfg, nil
}

// WriteConfig writes dir's config.json.
func WriteConfig(dir string, cfg Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(dir, ConfigFile), b, 0o600, renameio.WithTempDir(dir))
}

func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("switch lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("switch in %s: %w", dir, ErrRunning)
		}
		return nil, fmt.Errorf("switch lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func listenUnix(path string) (net.Listener, error) {
	// Only the lock holder gets here: a socket file left by a dead switch
	// is stale.
	_ = os.Remove(path)
	if err := sockpath.Check(path); err != nil {
		return nil, fmt.Errorf("switch: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("switch: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("switch: %w", err)
	}
	return ln, nil
}

// restore loads state.json.
func (s *Switch) restore() error {
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", stateFile, err)
	}
	var errs []error
	for _, ep := range st.Endpoints {
		errs = append(errs, s.r.SetEndpoint(ep))
	}
	for id, ports := range st.Listeners {
		if err := s.r.SetListeners(id, ports); err == nil {
			s.listeners[id] = ports
		}
	}
	if st.Services != nil {
		if err := s.gw.SetServices(*st.Services); err != nil {
			errs = append(errs, err)
		} else {
			s.services = st.Services
		}
	}
	for owner, hps := range st.HostPorts {
		s.hostPorts[owner] = hps
	}
	errs = append(errs, s.hp.set(s.allHostPorts()))
	return errors.Join(errs...)
}

// save writes the state; called with s.mu held.
func (s *Switch) saveLocked() error {
	st := state{Endpoints: s.r.Endpoints(), Listeners: s.listeners, Services: s.services, HostPorts: s.hostPorts}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(s.dir, stateFile), b, 0o600, renameio.WithTempDir(s.dir))
}

// servePorts plugs in the VMs shims hand over.
func (s *Switch) servePorts(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.plug(ctx, c.(*net.UnixConn))
	}
}

func (s *Switch) plug(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	id, f, err := switchport.Accept(c)
	if err != nil {
		s.log.Warn("refused a plug request", "err", err)
		_ = switchport.Answer(c, err)
		return
	}
	link, err := newDgramLink(f)
	if err != nil {
		_ = switchport.Answer(c, err)
		return
	}
	// The shim keeps c open for as long as the VM lives.
	go func() {
		var b [1]byte
		_, _ = c.Read(b[:])
		link.Close()
	}()
	// The answer goes out once the router has the link: a shim told
	// "plugged" can count on traffic flowing.
	answered := false
	err = s.r.Serve(ctx, id, link, func() {
		answered = true
		if err := switchport.Answer(c, nil); err != nil {
			link.Close()
		}
		s.log.Debug("VM plugged in", "vm", id)
	})
	if !answered {
		_ = switchport.Answer(c, err)
		return
	}
	if err != nil {
		s.log.Debug("VM unplugged", "vm", id, "err", err)
	}
}

// Status is the switch's view, for the node's health and `doctor`.
type Status struct {
	Pid       int              `json:"pid"`
	Since     time.Time        `json:"since"`
	Subnet    netip.Prefix     `json:"subnet"`
	Gateway   netip.Addr       `json:"gateway"`
	Endpoints []EndpointStatus `json:"endpoints,omitempty"`
	Counters  Counters         `json:"counters"`
	HostPorts []HostPort       `json:"hostPorts,omitempty"`
	Services  int              `json:"services"`
	// AllowHostLoopback: whether pods reach the host's loopback (Config).
	AllowHostLoopback bool `json:"allowHostLoopback"`
}

// EndpointStatus is one VM's endpoint and whether its VM is plugged in.
type EndpointStatus struct {
	Endpoint
	Plugged   bool   `json:"plugged"`
	Listeners []Port `json:"listeners,omitempty"`
}

func (s *Switch) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Pid: os.Getpid(), Since: s.start, Subnet: s.cfg.Subnet, Gateway: s.cfg.Gateway, Counters: s.r.Counters(), HostPorts: s.hp.list(), AllowHostLoopback: s.cfg.AllowHostLoopback}
	if s.services != nil {
		st.Services = len(s.services.Services)
	}
	for _, ep := range s.r.Endpoints() {
		st.Endpoints = append(st.Endpoints, EndpointStatus{Endpoint: ep, Plugged: s.r.Plugged(ep.ID), Listeners: s.listeners[ep.ID]})
	}
	return st
}

// handler is the control API:
//
//	GET    /status                   → Status
//	PUT    /endpoints/{id}           Endpoint
//	DELETE /endpoints/{id}
//	PUT    /endpoints/{id}/listeners []Port
//	PUT    /services                 ServiceTable
//	PUT    /hostports/{owner}        []HostPort (an owner's set: "node", a container)
//	POST   /dial?network=tcp&addr=ip:port → 200, then the connection is
//	       spliced to addr inside the pod network
func (s *Switch) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.status())
	})
	mux.HandleFunc("PUT /endpoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		var ep Endpoint
		if !readJSON(w, r, &ep) {
			return
		}
		if ep.ID != r.PathValue("id") {
			http.Error(w, "endpoint id does not match the path", http.StatusBadRequest)
			return
		}
		s.change(w, func() error { return s.r.SetEndpoint(ep) })
	})
	mux.HandleFunc("DELETE /endpoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.change(w, func() error {
			s.r.RemoveEndpoint(r.PathValue("id"))
			delete(s.listeners, r.PathValue("id"))
			return nil
		})
	})
	mux.HandleFunc("PUT /endpoints/{id}/listeners", func(w http.ResponseWriter, r *http.Request) {
		var ports []Port
		if !readJSON(w, r, &ports) {
			return
		}
		id := r.PathValue("id")
		s.change(w, func() error {
			if err := s.r.SetListeners(id, ports); err != nil {
				return err
			}
			s.listeners[id] = ports
			return nil
		})
	})
	mux.HandleFunc("PUT /services", func(w http.ResponseWriter, r *http.Request) {
		var t ServiceTable
		if !readJSON(w, r, &t) {
			return
		}
		s.change(w, func() error {
			if err := s.gw.SetServices(t); err != nil {
				return err
			}
			s.services = &t
			return nil
		})
	})
	mux.HandleFunc("PUT /hostports/{owner}", func(w http.ResponseWriter, r *http.Request) {
		var hps []HostPort
		if !readJSON(w, r, &hps) {
			return
		}
		owner := r.PathValue("owner")
		s.change(w, func() error {
			if err := s.conflicts(owner, hps); err != nil {
				return err
			}
			s.setOwner(owner, hps)
			// Listeners that cannot open (the port is taken on the host)
			// are reported; the owner's set stays, so a later push
			// retries them.
			if err := s.hp.set(s.allHostPorts()); err != nil {
				return err
			}
			return nil
		})
	})
	mux.HandleFunc("POST /dial", s.serveDial)
	return mux
}

// conflicts refuses a host port another owner publishes.
func (s *Switch) conflicts(owner string, hps []HostPort) error {
	for other, theirs := range s.hostPorts {
		if other == owner {
			continue
		}
		for _, t := range theirs {
			for _, h := range hps {
				if hostPortKey(t) == hostPortKey(h) {
					return fmt.Errorf("host port %s is published by %s", hostPortKey(h), other)
				}
			}
		}
	}
	return nil
}

func (s *Switch) setOwner(owner string, hps []HostPort) {
	if len(hps) == 0 {
		delete(s.hostPorts, owner)
		return
	}
	s.hostPorts[owner] = hps
}

// allHostPorts is every owner's host ports.
func (s *Switch) allHostPorts() []HostPort {
	var out []HostPort
	for _, hps := range s.hostPorts {
		out = append(out, hps...)
	}
	return out
}

// change applies a mutation and saves the state.
func (s *Switch) change(w http.ResponseWriter, fn func() error) {
	s.mu.Lock()
	err := fn()
	serr := s.saveLocked()
	s.mu.Unlock()
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	case serr != nil:
		http.Error(w, "save the switch state: "+serr.Error(), http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Switch) serveDial(w http.ResponseWriter, r *http.Request) {
	network := r.URL.Query().Get("network")
	if network == "" {
		network = "tcp"
	}
	addr, err := netip.ParseAddrPort(r.URL.Query().Get("addr"))
	if err != nil || !addr.Addr().Is4() {
		http.Error(w, "addr must be an IPv4 address and port", http.StatusBadRequest)
		return
	}
	out, err := s.gw.DialInside(r.Context(), network, addr)
	if err != nil {
		http.Error(w, fmt.Sprintf("dial %s %v in the pod network: %v", network, addr, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		out.Close()
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		out.Close()
		return
	}
	_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
	if rw.Flush() != nil {
		c.Close()
		out.Close()
		return
	}
	splice(&bufferedConn{Conn: c, r: rw.Reader}, out)
}

// bufferedConn reads what the server's reader already buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
