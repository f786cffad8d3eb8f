package agent_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
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
