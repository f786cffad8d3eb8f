package agent_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

func tcpPorts(r *api.ListenersResponse) []uint32 {
	var out []uint32
	for _, p := range r.GetPorts() {
		if p.GetProtocol() == "TCP" {
			out = append(out, p.GetPort())
		}
	}
	return out
}

// A server appears in Listeners once it listens, with a new version, and a
// long poll with the current version waits.
func TestListenersSeesServersComeAndGo(t *testing.T) {
	e := newEnv(t)
	first, err := e.cl.Listeners(ctxT(t), &api.ListenersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	same, err := e.cl.Listeners(ctxT(t), &api.ListenersRequest{KnownVersion: first.GetVersion(), WaitNs: int64(700 * time.Millisecond)})
	if err != nil || same.GetVersion() != first.GetVersion() || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("unchanged long poll: %v %v after %v", same, err, time.Since(start))
	}
	ln, err := net.Listen("tcp", ":0") // on every address: a server
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	lo, err := net.Listen("tcp", "127.0.0.1:0") // loopback only: not the pod's
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	changed, err := e.cl.Listeners(ctxT(t), &api.ListenersRequest{KnownVersion: first.GetVersion(), WaitNs: int64(10 * time.Second)})
	if err != nil || changed.GetVersion() == first.GetVersion() || !slices.Contains(tcpPorts(changed), port) {
		t.Fatalf("after listening on %d: %v %v", port, changed, err)
	}
	if slices.Contains(tcpPorts(changed), uint32(lo.Addr().(*net.TCPAddr).Port)) {
		t.Errorf("a loopback-only listener was reported: %v", changed)
	}
	ln.Close()
	gone, err := e.cl.Listeners(ctxT(t), &api.ListenersRequest{KnownVersion: changed.GetVersion(), WaitNs: int64(10 * time.Second)})
	if err != nil || slices.Contains(tcpPorts(gone), port) {
		t.Fatalf("after closing %d: %v %v", port, gone, err)
	}
}

// A relay listens for a sibling's port and hands each connection to the
// gateway's relay with the port first; a port a process here already
// serves is left to it.
func TestRelaysJoinLocalhostToTheGateway(t *testing.T) {
	e := newEnv(t)
	gw, err := net.Listen("tcp", "127.0.0.1:0") // stands in for the gateway's relay
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	got := make(chan uint16, 1)
	go func() {
		c, err := gw.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var hdr [2]byte
		io.ReadFull(c, hdr[:])
		got <- binary.BigEndian.Uint16(hdr[:])
		io.WriteString(c, "sibling")
	}()
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := uint32(busy.Addr().(*net.TCPAddr).Port)
	free, _ := net.Listen("tcp", ":0")
	relayPort := uint32(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	via := netip.MustParseAddrPort(gw.Addr().String())
	resp, err := e.cl.SetRelays(ctxT(t), &api.SetRelaysRequest{Gateway: via.Addr().String(), RelayPort: uint32(via.Port()), TcpPorts: []uint32{relayPort, busyPort}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetTaken(), []uint32{busyPort}) {
		t.Errorf("taken = %v, want [%d]", resp.GetTaken(), busyPort)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(relayPort)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "sibling" || <-got != uint16(relayPort) {
		t.Fatalf("through the relay: %q", b)
	}
	// The relay is not one of this container's servers.
	l, err := e.cl.Listeners(ctxT(t), &api.ListenersRequest{})
	if err != nil || slices.Contains(tcpPorts(l), relayPort) {
		t.Errorf("relay port %d reported as a listener: %v %v", relayPort, l, err)
	}
	// An empty set closes the relay.
	if _, err := e.cl.SetRelays(ctxT(t), &api.SetRelaysRequest{Gateway: via.Addr().String(), RelayPort: uint32(via.Port())}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(relayPort)), time.Second); err == nil {
		c.Close()
		t.Error("the relay still listens after its removal")
	}
}
