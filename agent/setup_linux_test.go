package agent_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSetupNetworkClockAndSysctls(t *testing.T) {
	var clock time.Time
	e := newEnv(t, func(c *agent.Config) {
		c.SetClock = func(t time.Time) error { clock = t; return nil }
	})
	// A veth pair inside the tests' private network namespace; the guest
	// side is found by its MAC and renamed.
	ipCmd(t, "link", "add", "vkt0", "type", "veth", "peer", "name", "vkt1")
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", "eth0").Run()
		exec.Command("ip", "link", "del", "vkt0").Run()
	})
	ipCmd(t, "link", "set", "vkt0", "address", "02:00:00:aa:bb:01")
	ipCmd(t, "addr", "add", "10.77.0.1/24", "dev", "vkt1")
	ipCmd(t, "link", "set", "vkt1", "up")
	when := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	resp, err := e.cl.Setup(ctxT(t), &api.SetupRequest{
		TimeUnixNs: when.UnixNano(),
		Interfaces: []*api.Interface{{Mac: "02:00:00:aa:bb:01", Addresses: []string{"10.77.0.2/24"}, Mtu: 1400, Name: "eth0"}},
		// The peer shares the test's namespace (and subnet), so the default
		// route names its device; the host's route for 10.99/16 has none.
		Routes:  []*api.Route{{Gateway: "10.77.0.1", InterfaceName: "eth0"}, {Destination: "10.99.0.0/16", InterfaceName: "eth0"}},
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAddresses()) != 1 || resp.GetAddresses()[0] != "10.77.0.2/24" || !clock.Equal(when) {
		t.Fatalf("response %+v, clock set to %v", resp, clock)
	}
	link := ipCmd(t, "-o", "link", "show", "eth0")
	if !strings.Contains(link, "mtu 1400") || !strings.Contains(link, "UP") || !strings.Contains(link, "02:00:00:aa:bb:01") {
		t.Fatalf("link: %s", link)
	}
	if addr := ipCmd(t, "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(addr, "inet 10.77.0.2/24 brd 10.77.0.255") {
		t.Fatalf("addr: %s", addr)
	}
	routes := ipCmd(t, "route", "show")
	if !strings.Contains(routes, "default via 10.77.0.1 dev eth0 proto static") || !strings.Contains(routes, "10.99.0.0/16 dev eth0 proto static scope link") {
		t.Fatalf("routes:\n%s", routes)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("ip_forward = %q", b)
	}
	if _, err := e.cl.Setup(ctxT(t), &api.SetupRequest{Interfaces: []*api.Interface{{Mac: "02:00:00:00:00:99", Addresses: []string{"10.1.0.2/24"}}}}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown mac: %v, want NotFound", err)
	}
}

// A guest resumed from a template still has the template machine's MAC
// on its NIC: Setup gives the NIC the MAC asked for (and reseeds the
// random numbers first) instead of finding no such interface.
func TestSetupGivesATemplateGuestsNICItsMAC(t *testing.T) {
	reseeded := 0
	e := newEnv(t, func(c *agent.Config) {
		c.TemplateGuest = true
		c.ReseedRandom = func() error { reseeded++; return nil }
	})
	// One Ethernet link, as in a resumed machine with one NIC.
	ipCmd(t, "tuntap", "add", "dev", "vkt2", "mode", "tap")
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", "eth0").Run()
		exec.Command("ip", "link", "del", "vkt2").Run()
	})
	ipCmd(t, "link", "set", "vkt2", "address", "02:00:00:00:00:01")
	const mac = "02:00:00:aa:bb:02"
	if _, err := e.cl.Setup(ctxT(t), &api.SetupRequest{
		Interfaces: []*api.Interface{{Mac: mac, Addresses: []string{"10.78.0.2/24"}, Name: "eth0"}},
	}); err != nil {
		t.Fatal(err)
	}
	if link := ipCmd(t, "-o", "link", "show", "eth0"); !strings.Contains(link, mac) {
		t.Fatalf("eth0: %s, want MAC %s", link, mac)
	}
	if reseeded != 1 {
		t.Fatalf("Setup reseeded %d times, want once", reseeded)
	}
}

func TestShutdownStopsEverythingThenPowersOff(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "shutdown")
	ctx := ctxT(t)
	start := func(pid string, args []string) {
		if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: pid, Args: args}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: pid}); err != nil {
			t.Fatal(err)
		}
	}
	// The first process is the container's PID 1, deaf to SIGTERM
	// without a handler: the polite one is the second.
	start("first", []string{"sleep", "100"})
	start("polite", []string{"sleep", "100"})
	start("stubborn", sh(`trap "" TERM; sleep 100`))
	time.Sleep(50 * time.Millisecond) // let sh install its trap
	if _, err := e.cl.Shutdown(ctx, &api.ShutdownRequest{GracePeriodNs: int64(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	for pid, sig := range map[string]int32{"first": 9, "polite": 15, "stubborn": 9} {
		w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: pid})
		if err != nil || w.GetExit().GetSignal() != sig {
			t.Errorf("%s: %v %+v, want signal %d", pid, err, w.GetExit(), sig)
		}
	}
	select {
	case <-e.powerOff:
	case <-time.After(5 * time.Second):
		t.Fatal("PowerOff not called after Shutdown")
	}
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "late", Args: []string{"true"}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("process after shutdown: %v", err)
	}
}

// TestShutdownDeliversOutputBeforeReplying: an exec attached while the
// machine shuts down gets its output and exit status, and the process's
// whole log, end frame included, has been written to the log port when
// Shutdown replies (the power-off follows the reply).
func TestShutdownDeliversOutputBeforeReplying(t *testing.T) {
	// The host end of the log port does not read until after Shutdown was
	// asked: everything the process wrote is still queued in the agent.
	sink := &lockedBuffer{open: make(chan struct{})}
	e := newEnv(t, func(c *agent.Config) { c.LogSink = sink })
	id := e.createContainer(t, "drain")
	ctx := ctxT(t)
	var out strings.Builder
	began := make(chan struct{})
	type result struct {
		st  *api.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.cl.Exec(ctx, client.ExecOptions{
			ContainerID: id, ProcessID: "stubborn", LogName: "0",
			Args:   sh(`trap "" TERM; echo begin; seq 1 3000; while true; do sleep 1; done`),
			Stdout: &notifyWriter{w: &out, seen: "3000\n", ch: began},
		})
		done <- result{st, err}
	}()
	select {
	case <-began:
	case r := <-done:
		t.Fatalf("exec ended early: %+v %v", r.st, r.err)
	}
	time.AfterFunc(500*time.Millisecond, func() { close(sink.open) })
	if _, err := e.cl.Shutdown(ctx, &api.ShutdownRequest{GracePeriodNs: int64(200 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// Read what had reached the port when the reply came.
	r := logframe.NewReader(bytes.NewReader(sink.Bytes()))
	var logged strings.Builder
	ended := false
	for !ended {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("the log port had %d bytes of output and no end frame when Shutdown replied (%v)", logged.Len(), err)
		}
		if f.Name != "0" {
			t.Fatalf("frame for %q", f.Name)
		}
		ended = f.Stream == logframe.End
		logged.Write(f.Data)
	}
	if !strings.HasPrefix(logged.String(), "begin\n1\n") || !strings.HasSuffix(logged.String(), "\n3000\n") {
		t.Fatalf("log before its end frame: %d bytes", logged.Len())
	}
	res := <-done
	if res.err != nil || res.st.GetSignal() != 9 || out.String() != logged.String() {
		t.Fatalf("exec during shutdown: %+v %v with %d bytes of output, want killed by SIGKILL after %d bytes", res.st, res.err, out.Len(), logged.Len())
	}
}

// lockedBuffer is a log port that keeps what it is sent; writes wait
// until open is closed (the host has not connected yet).
type lockedBuffer struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	<-b.open
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// notifyWriter closes ch once what was written ends with seen.
type notifyWriter struct {
	w    *strings.Builder
	seen string
	ch   chan struct{}
	once sync.Once
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	n.w.Write(p)
	if strings.HasSuffix(n.w.String(), n.seen) {
		n.once.Do(func() { close(n.ch) })
	}
	return len(p), nil
}
