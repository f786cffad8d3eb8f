package vswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/vk-applevm/vk-applevm/network/switchport"
)

// These tests run a real switch (in this process) and stand in for each VM
// with a gVisor TCP/IP stack on the VM's end of a real socket pair, plugged
// in through the ports socket as a shim does: everything but the guest
// kernel is the code that runs on a node.

type testSwitch struct {
	dir      string
	c        *Client
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

func startSwitch(t *testing.T, dir string, cfg Config) *testSwitch {
	t.Helper()
	if err := WriteConfig(dir, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testSwitch{dir: dir, c: NewClient(dir), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- Run(ctx, dir, testLog) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := ts.c.WaitReady(wctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	return ts
}

func (ts *testSwitch) stop(t *testing.T) {
	t.Helper()
	ts.stopOnce.Do(func() {
		ts.cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("switch: %v", err)
		}
		ts.c.Close()
	})
}

func shortDir(t *testing.T) string {
	// Unix socket paths must stay short: t.TempDir can be long.
	dir, err := os.MkdirTemp("", "vsw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeVM is a guest stand-in: a netstack configured as the agent configures
// a guest (pod address /32, the gateway on-link, default route through it).
type fakeVM struct {
	ep     Endpoint
	s      *stack.Stack
	cancel context.CancelFunc
	plugs  chan struct{}
}

func plugVM(t *testing.T, ts *testSwitch, ep Endpoint, gw netip.Addr) *fakeVM {
	t.Helper()
	ctx := context.Background()
	if err := ts.c.SetEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	vmEnd, swEnd := must2(switchport.Pair())
	hw, _ := net.ParseMAC(ep.MAC)
	link, err := fdbased.New(&fdbased.Options{FDs: []int{int(vmEnd.Fd())}, MTU: 1500, EthernetHeader: true, Address: tcpip.LinkAddress(hw)})
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := s.CreateNIC(1, link); err != nil {
		t.Fatal(err)
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(ep.IP.As4()).WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	gwSub, _ := tcpip.NewSubnet(tcpip.AddrFrom4(gw.As4()), tcpip.MaskFromBytes(net.CIDRMask(32, 32)))
	s.SetRouteTable([]tcpip.Route{
		{Destination: gwSub, NIC: 1},
		{Destination: header4Any(), Gateway: tcpip.AddrFrom4(gw.As4()), NIC: 1},
	})
	first, last := EphemeralRange(ep.Slot, ep.Slots)
	if err := s.SetPortRange(first, last); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	vm := &fakeVM{ep: ep, s: s, cancel: cancel, plugs: make(chan struct{}, 16)}
	go switchport.Plug(pctx, ts.c.PortsSocket(), ep.ID, swEnd, testLog, func() { vm.plugs <- struct{}{} })
	select {
	case <-vm.plugs:
	case <-time.After(10 * time.Second):
		t.Fatal("VM not plugged in")
	}
	t.Cleanup(func() {
		cancel()
		s.Close()
		vmEnd.Close()
	})
	return vm
}

func header4Any() tcpip.Subnet {
	sub, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(net.CIDRMask(0, 32)))
	return sub
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func (vm *fakeVM) full(a netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(a.Addr().As4()), Port: a.Port()}
}

func (vm *fakeVM) dial(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, vm.s, vm.full(a), ipv4.ProtocolNumber)
}

// serve answers every connection on port with name, then closes.
func (vm *fakeVM) serve(t *testing.T, port uint16, name string) {
	t.Helper()
	ln, err := gonet.ListenTCP(vm.s, tcpip.FullAddress{NIC: 1, Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name)
			}()
		}
	}()
}

// fetch connects to a from vm and returns what the server says.
func (vm *fakeVM) fetch(t *testing.T, a netip.AddrPort) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := vm.dial(ctx, a)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func (vm *fakeVM) query(t *testing.T, server netip.Addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c, err := gonet.DialUDP(vm.s, nil, ptr(vm.full(netip.AddrPortFrom(server, DNSPort))), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	dc := &dns.Conn{Conn: c}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := dc.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	resp, err := dc.ReadMsg()
	if err != nil {
		t.Fatalf("DNS %s: %v", name, err)
	}
	return resp
}

var (
	swSubnet = netip.MustParsePrefix("10.214.0.0/24")
	swGW     = netip.MustParseAddr("10.214.0.1")
)

func epAt(id string, last byte, pod string, slot, slots int, ports ...Port) Endpoint {
	return Endpoint{ID: id, MAC: fmt.Sprintf("02:00:00:00:01:%02x", last+byte(slot)), IP: netip.AddrFrom4([4]byte{10, 214, 0, last}), Pod: pod, Slot: slot, Slots: slots, Ports: ports}
}

func TestPodsReachEachOtherAndSharedAddressesDemux(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	client := plugVM(t, ts, epAt("client", 10, "pa", 0, 1), swGW)
	// A two-container pod: "web" serves 80, "sidecar" (slot 0, the
	// primary) serves 9000 without declaring it.
	sidecar := plugVM(t, ts, epAt("side", 20, "pb", 0, 2), swGW)
	web := plugVM(t, ts, epAt("web", 20, "pb", 1, 2, Port{"TCP", 80}), swGW)
	web.serve(t, 80, "web")
	sidecar.serve(t, 9000, "sidecar")
	podB := netip.MustParseAddr("10.214.0.20")

	if got, err := client.fetch(t, netip.AddrPortFrom(podB, 80)); err != nil || got != "web" {
		t.Fatalf("pod IP:80 → %q, %v; want web", got, err)
	}
	// Undeclared: reaches the primary, which happens to serve it.
	if got, err := client.fetch(t, netip.AddrPortFrom(podB, 9000)); err != nil || got != "sidecar" {
		t.Fatalf("pod IP:9000 → %q, %v; want sidecar", got, err)
	}
	// Reported by the agent, the port finds its VM even off the primary.
	web.serve(t, 7000, "web7000")
	if err := ts.c.SetListeners(context.Background(), "web", []Port{{"TCP", 7000}}); err != nil {
		t.Fatal(err)
	}
	if got, err := client.fetch(t, netip.AddrPortFrom(podB, 7000)); err != nil || got != "web7000" {
		t.Fatalf("pod IP:7000 → %q, %v; want web7000", got, err)
	}
	// Both VMs of the pod open connections at once: each gets its answers.
	client.serve(t, 8080, "client")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		vm := web
		if i%2 == 0 {
			vm = sidecar
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := vm.fetch(t, netip.AddrPortFrom(netip.MustParseAddr("10.214.0.10"), 8080))
			if err != nil || got != "client" {
				errs <- fmt.Errorf("%s → client: %q %v", vm.ep.ID, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSiblingsMeetThroughTheRelay(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	sidecar := plugVM(t, ts, epAt("side", 20, "pb", 0, 2), swGW)
	web := plugVM(t, ts, epAt("web", 20, "pb", 1, 2, Port{"TCP", 80}), swGW)
	web.serve(t, 80, "web")
	// What the sidecar's agent does for localhost:80: the relay, told 80.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sidecar.dial(ctx, netip.AddrPortFrom(swGW, RelayPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 80})
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); string(b) != "web" {
		t.Fatalf("relay to :80 → %q %v", b, err)
	}
	// A port no sibling serves is refused.
	c2, err := sidecar.dial(ctx, netip.AddrPortFrom(swGW, RelayPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte{0x1f, 0x90})
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c2); len(b) != 0 {
		t.Fatalf("relay to an unserved port answered %q", b)
	}
}

func TestServicesDNSAndForwarding(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	client := plugVM(t, ts, epAt("client", 10, "pa", 0, 1), swGW)
	web1 := plugVM(t, ts, epAt("web1", 20, "pb", 0, 1), swGW)
	web1.serve(t, 8080, "web1")
	vip := netip.MustParseAddr("10.96.0.50")
	web1IP := netip.MustParseAddr("10.214.0.20")
	table := ServiceTable{
		ClusterDomain: "cluster.local",
		Services: []Service{
			{Namespace: "ns1", Name: "web", ClusterIPs: []netip.Addr{vip}, Ports: []ServicePort{{Name: "http", Protocol: "TCP", Port: 80}},
				Endpoints: []ServiceEndpoint{{IP: web1IP, Ports: []EndpointPort{{Name: "http", Protocol: "TCP", Port: 8080}}}}},
			{Namespace: "ns1", Name: "db", Ports: []ServicePort{{Name: "pg", Protocol: "TCP", Port: 5432}},
				Endpoints: []ServiceEndpoint{{IP: web1IP, Hostname: "db-0", Ports: []EndpointPort{{Name: "pg", Protocol: "TCP", Port: 5432}}}}},
			{Namespace: "ns1", Name: "empty", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.51")}, Ports: []ServicePort{{Protocol: "TCP", Port: 80}}},
		},
		Pods: []PodRecord{{Namespace: "ns1", IP: web1IP}},
	}
	if err := ts.c.SetServices(context.Background(), table); err != nil {
		t.Fatal(err)
	}
	aOf := func(m *dns.Msg) []string {
		var out []string
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return out
	}
	if got := aOf(client.query(t, swGW, "web.ns1.svc.cluster.local.", dns.TypeA)); strings.Join(got, ",") != vip.String() {
		t.Errorf("web.ns1.svc → %v", got)
	}
	if got := aOf(client.query(t, swGW, "db.ns1.svc.cluster.local.", dns.TypeA)); strings.Join(got, ",") != web1IP.String() {
		t.Errorf("headless db.ns1.svc → %v", got)
	}
	if got := aOf(client.query(t, swGW, "db-0.db.ns1.svc.cluster.local.", dns.TypeA)); strings.Join(got, ",") != web1IP.String() {
		t.Errorf("db-0.db.ns1.svc → %v", got)
	}
	if got := aOf(client.query(t, swGW, "10-214-0-20.ns1.pod.cluster.local.", dns.TypeA)); strings.Join(got, ",") != web1IP.String() {
		t.Errorf("pod record → %v", got)
	}
	srv := client.query(t, swGW, "_http._tcp.web.ns1.svc.cluster.local.", dns.TypeSRV)
	if len(srv.Answer) != 1 || srv.Answer[0].(*dns.SRV).Port != 80 || srv.Answer[0].(*dns.SRV).Target != "web.ns1.svc.cluster.local." {
		t.Errorf("SRV → %v", srv.Answer)
	}
	if m := client.query(t, swGW, "nope.ns1.svc.cluster.local.", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Errorf("unknown service: rcode %d", m.Rcode)
	}
	ptr := client.query(t, swGW, "50.0.96.10.in-addr.arpa.", dns.TypePTR)
	if len(ptr.Answer) != 1 || ptr.Answer[0].(*dns.PTR).Ptr != "web.ns1.svc.cluster.local." {
		t.Errorf("PTR → %v", ptr.Answer)
	}
	// The Service address forwards to the endpoint's target port.
	if got, err := client.fetch(t, netip.AddrPortFrom(vip, 80)); err != nil || got != "web1" {
		t.Fatalf("ClusterIP:80 → %q %v", got, err)
	}
	// No endpoint: refused at once.
	if _, err := client.fetch(t, netip.AddrPortFrom(netip.MustParseAddr("10.96.0.51"), 80)); err == nil {
		t.Error("a Service without endpoints accepted a connection")
	}
}

func TestOutboundAndTheHostLoopback(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	client := plugVM(t, ts, epAt("client", 10, "pa", 0, 1), swGW)
	// A service on the host's loopback (a developer's database).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "host")
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	if _, err := client.fetch(t, netip.AddrPortFrom(swGW, port)); err == nil {
		t.Error("the host's loopback is reachable through the gateway without the flag")
	}
	ts.stop(t)

	cfg := Config{Subnet: swSubnet, AllowHostLoopback: true}
	ts2 := startSwitch(t, ts.dir, cfg)
	defer ts2.stop(t)
	select {
	case <-client.plugs:
	case <-time.After(10 * time.Second):
		t.Fatal("the VM was not plugged into the new switch")
	}
	if got, err := client.fetch(t, netip.AddrPortFrom(swGW, port)); err != nil || got != "host" {
		t.Errorf("with AllowHostLoopback, gateway:%d → %q %v", port, got, err)
	}
}

func TestSwitchRestartKeepsPodsTalking(t *testing.T) {
	dir := shortDir(t)
	ts := startSwitch(t, dir, Config{Subnet: swSubnet})
	a := plugVM(t, ts, epAt("a", 10, "pa", 0, 1), swGW)
	b := plugVM(t, ts, epAt("b", 20, "pb", 0, 1), swGW)
	b.serve(t, 80, "b")
	bAddr := netip.AddrPortFrom(netip.MustParseAddr("10.214.0.20"), 80)
	if got, err := a.fetch(t, bAddr); err != nil || got != "b" {
		t.Fatalf("before: %q %v", got, err)
	}
	ts.stop(t)
	if _, err := ts.c.Status(context.Background()); err == nil {
		t.Fatal("the switch still answers")
	}
	ts2 := startSwitch(t, dir, Config{Subnet: swSubnet})
	defer ts2.stop(t)
	for _, vm := range []*fakeVM{a, b} {
		select {
		case <-vm.plugs:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not plugged in again", vm.ep.ID)
		}
	}
	if got, err := a.fetch(t, bAddr); err != nil || got != "b" {
		t.Fatalf("after the restart: %q %v", got, err)
	}
	st, err := ts2.c.Status(context.Background())
	if err != nil || len(st.Endpoints) != 2 || !st.Endpoints[0].Plugged || !st.Endpoints[1].Plugged {
		t.Fatalf("status after restart: %+v %v", st, err)
	}
}

func TestDialAndHostPortsReachTheServingVM(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	side := plugVM(t, ts, epAt("side", 20, "pb", 0, 2), swGW)
	web := plugVM(t, ts, epAt("web", 20, "pb", 1, 2, Port{"TCP", 80}), swGW)
	side.serve(t, 9000, "side")
	web.serve(t, 80, "web")
	podB := netip.MustParseAddr("10.214.0.20")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ts.c.Dial(ctx, "tcp", netip.AddrPortFrom(podB, 80))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "web" {
		t.Fatalf("dial pod:80 through the switch → %q", b)
	}
	if _, err := ts.c.Dial(ctx, "tcp", netip.AddrPortFrom(podB, 9999)); err == nil {
		t.Error("dial to a closed port succeeded")
	}
	// Publish pod:80 on the host's loopback.
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	hostPort := uint16(probe.Addr().(*net.TCPAddr).Port)
	probe.Close()
	hp := HostPort{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort, Protocol: "TCP", PodIP: podB, Port: 80}
	if err := ts.c.SetHostPorts(ctx, "node", []HostPort{hp}); err != nil {
		t.Fatal(err)
	}
	hc, err := net.Dial("tcp", netip.AddrPortFrom(hp.HostIP, hostPort).String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(hc)
	hc.Close()
	if string(b) != "web" {
		t.Fatalf("host port → %q", b)
	}
	// Another owner cannot take it.
	if err := ts.c.SetHostPorts(ctx, "container-1", []HostPort{hp}); err == nil || !strings.Contains(err.Error(), "published by node") {
		t.Errorf("a second owner of %d: %v", hostPort, err)
	}
	// A taken host port is reported, not silently ignored.
	if err := ts.c.SetHostPorts(ctx, "node", []HostPort{hp, {HostIP: hp.HostIP, HostPort: uint16(ts.port(t)), Protocol: "TCP", PodIP: podB, Port: 80}}); err == nil {
		t.Error("publishing a taken host port succeeded")
	}
	if err := ts.c.SetHostPorts(ctx, "node", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", netip.AddrPortFrom(hp.HostIP, hostPort).String(), time.Second); err == nil {
		t.Error("an unpublished host port still answers")
	}
}

// port returns a port that is taken on the host's loopback for the test's
// life.
func (ts *testSwitch) port(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestSecondSwitchOnADirectoryIsRefused(t *testing.T) {
	dir := shortDir(t)
	ts := startSwitch(t, dir, Config{Subnet: swSubnet})
	defer ts.stop(t)
	err := Run(context.Background(), dir, testLog)
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second switch: %v, want ErrRunning", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CtlSocket)); err != nil {
		t.Errorf("the second switch disturbed the first: %v", err)
	}
}

func TestPlugRefusesUnknownVMsAndNonDatagramSockets(t *testing.T) {
	ts := startSwitch(t, shortDir(t), Config{Subnet: swSubnet})
	defer ts.stop(t)
	_, swEnd := must2(switchport.Pair())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := switchport.PlugOnce(ctx, ts.c.PortsSocket(), "ghost", swEnd); err == nil || !strings.Contains(err.Error(), "unknown endpoint") {
		t.Errorf("plugging an unknown VM: %v", err)
	}
	if err := ts.c.SetEndpoint(ctx, epAt("real", 10, "pa", 0, 1)); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if _, err := switchport.PlugOnce(ctx, ts.c.PortsSocket(), "real", f); err == nil {
		t.Error("plugging /dev/null succeeded")
	}
}
