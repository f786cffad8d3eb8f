package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/dhcp"
	"github.com/vk-applevm/vk-applevm/network/netns"
)

// The agent runs in the tests' private network namespace (agenttest.Main),
// as in a guest; dnsmasq runs in a second namespace made here, on the
// other end of a veth pair.

const (
	dhcpClientMAC = "02:00:00:d4:c0:01"
	dhcpServerIP  = "10.78.0.1"
)

// dhcpServer is a dnsmasq serving 10.78.0.50-59 with 120 s leases.
type dhcpServer struct {
	log, leases string
}

// newNetns makes an unnamed network namespace and returns a path to it
// that stays valid until the test ends (named ones need init's mount
// namespace, and the tests run in a private one).
func newNetns(t *testing.T) string {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{err: fmt.Errorf("leave new netns: %w", err)} // the thread dies locked
			return
		}
		runtime.UnlockOSThread()
		res <- result{f: f, err: err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatalf("create network namespace: %v", r.err)
	}
	t.Cleanup(func() { r.f.Close() })
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), r.f.Fd())
}

// startDHCPServer links clientLink (created here, in the tests'
// namespace) to dnsmasq in a namespace of its own.
func startDHCPServer(t *testing.T, clientLink string) *dhcpServer {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is needed for the DHCP tests: apt-get install dnsmasq-base (make deps does): %v", err)
	}
	ns := newNetns(t)
	serverLink := clientLink + "s"
	ipCmd(t, "link", "add", clientLink, "type", "veth", "peer", "name", serverLink)
	t.Cleanup(func() { exec.Command("ip", "link", "del", clientLink).Run() })
	ipCmd(t, "link", "set", clientLink, "address", dhcpClientMAC)
	ipCmd(t, "link", "set", serverLink, "netns", ns)
	dir := t.TempDir()
	s := &dhcpServer{log: filepath.Join(dir, "dnsmasq.log"), leases: filepath.Join(dir, "leases")}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+serverLink, "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp",
		"--dhcp-range=10.78.0.50,10.78.0.59,255.255.255.0,2m", // 2 min: dnsmasq's shortest lease
		"--dhcp-option=option:router,"+dhcpServerIP, "--dhcp-option=option:dns-server,10.78.0.53,10.78.0.54",
		"--domain=dhcp.test", "--dhcp-leasefile="+s.leases, "--pid-file=",
		// No ICMP check of an address before offering it: it delays the
		// first OFFER by 3 s (dnsmasq's ping wait), which is not the client's time.
		"--no-ping")
	cmd.Stdout, cmd.Stderr = logf, logf
	err = netns.Do(ns, func() error {
		for _, args := range [][]string{
			{"addr", "add", dhcpServerIP + "/24", "dev", serverLink},
			{"link", "set", serverLink, "up"},
			{"link", "set", "lo", "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return cmd.Start()
	})
	if err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.logText(t), "DHCP, IP range"); {
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start:\n%s", s.logText(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

func (s *dhcpServer) logText(t *testing.T) string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// count is how often dnsmasq logged a message of type typ for addr.
func (s *dhcpServer) count(t *testing.T, typ, addr string) int {
	re := regexp.MustCompile(typ + `\([^)]*\) ` + regexp.QuoteMeta(addr) + " " + dhcpClientMAC)
	return len(re.FindAllString(s.logText(t), -1))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSetupLeasesByDHCPAndRenews(t *testing.T) {
	srv := startDHCPServer(t, "dhcpc0")
	// Lease keepers wait through this channel instead of a timer.
	waits, fire := make(chan time.Duration, 16), make(chan time.Time)
	agent.SetDHCPAfter(t, func(d time.Duration) <-chan time.Time { waits <- d; return fire })
	var stateDir string
	e := newEnv(t, func(c *agent.Config) { stateDir = c.StateDir })
	t.Cleanup(func() { exec.Command("ip", "link", "del", "dhcp0").Run() })

	begin := time.Now()
	resp, err := e.cl.Setup(ctxT(t), &api.SetupRequest{
		Hostname:   "dhcp-box",
		Interfaces: []*api.Interface{{Mac: dhcpClientMAC, Dhcp: true, Name: "dhcp0"}},
		Dns:        &api.DNS{}, // as the host sends it for vz NAT: DHCP's servers apply
		Hosts:      []*api.HostEntry{{Ip: "10.78.0.9", Names: []string{"other"}}},
	})
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("setup: %v\ndnsmasq:\n%s", err, srv.logText(t))
	}
	t.Logf("Setup with a DHCP lease over veth took %v", took)
	if len(resp.GetAddresses()) != 1 {
		t.Fatalf("addresses %v", resp.GetAddresses())
	}
	leased := netip.MustParsePrefix(resp.GetAddresses()[0])
	ip := leased.Addr().String()
	if leased.Bits() != 24 || !netip.MustParsePrefix("10.78.0.48/28").Contains(leased.Addr()) || leased.Addr().As4()[3] < 50 {
		t.Fatalf("leased %s, want one of 10.78.0.50-59/24", leased)
	}
	addr := ipCmd(t, "-4", "addr", "show", "dev", "dhcp0")
	if !strings.Contains(addr, "inet "+leased.String()+" brd 10.78.0.255") || !regexp.MustCompile(`valid_lft (1[01][0-9]|120)sec`).MatchString(addr) {
		t.Fatalf("address (want the lease's lifetime, at most 120 s):\n%s", addr)
	}
	if routes := ipCmd(t, "route", "show"); !strings.Contains(routes, "default via "+dhcpServerIP+" dev dhcp0") {
		t.Fatalf("routes:\n%s", routes)
	}
	if got, want := readFile(t, filepath.Join(stateDir, "etc", "resolv.conf")), "nameserver 10.78.0.53\nnameserver 10.78.0.54\nsearch dhcp.test\n"; got != want {
		t.Fatalf("resolv.conf %q, want %q", got, want)
	}
	hosts := readFile(t, filepath.Join(stateDir, "etc", "hosts"))
	if !strings.Contains(hosts, ip+"\tdhcp-box\n") || !strings.Contains(hosts, "10.78.0.9\tother\n") {
		t.Fatalf("hosts:\n%s", hosts)
	}
	// dnsmasq's lease file: expiry, MAC, address, hostname, client id.
	if l := readFile(t, srv.leases); !strings.Contains(l, dhcpClientMAC+" "+ip+" dhcp-box 01:"+dhcpClientMAC) {
		t.Fatalf("dnsmasq leases: %q", l)
	}

	// The keeper waits for T1: dnsmasq sends half the lease less up to 5 s
	// at random (its "fuzz", so that clients do not renew in step).
	if d := <-waits; d < 50*time.Second || d > 60*time.Second {
		t.Fatalf("renewal scheduled after %v, want T1 (55-60 s) less the time since the request", d)
	}
	fire <- time.Now()
	// After the renewal (unicast to the server) and its application, the
	// keeper waits for the next T1.
	if d := <-waits; d < 50*time.Second || d > 60*time.Second {
		t.Fatalf("after renewal: waiting %v, want the new T1\ndnsmasq:\n%s", d, srv.logText(t))
	}
	if n := srv.count(t, "DHCPACK", ip); n != 2 {
		t.Fatalf("%d DHCPACKs for %s, want the lease's and the renewal's\n%s", n, ip, srv.logText(t))
	}
	if addr := ipCmd(t, "-4", "addr", "show", "dev", "dhcp0"); !strings.Contains(addr, "inet "+leased.String()) {
		t.Fatalf("address after renewal:\n%s", addr)
	}

	// Setup again with name servers from the host: they win, the address
	// stays (dnsmasq knows the client) and the keeper is replaced.
	resp, err = e.cl.Setup(ctxT(t), &api.SetupRequest{
		Interfaces: []*api.Interface{{Mac: dhcpClientMAC, Dhcp: true, Name: "dhcp0"}},
		Dns:        &api.DNS{Nameservers: []string{"10.99.0.10"}, Options: []string{"ndots:5"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAddresses()) != 1 || resp.GetAddresses()[0] != leased.String() {
		t.Fatalf("second setup leased %v, want %s again", resp.GetAddresses(), leased)
	}
	if got := readFile(t, filepath.Join(stateDir, "etc", "resolv.conf")); got != "nameserver 10.99.0.10\noptions ndots:5\n" {
		t.Fatalf("resolv.conf with the host's DNS: %q", got)
	}
	if d := <-waits; d < 50*time.Second {
		t.Fatalf("new keeper waits %v", d)
	}

	// REBINDING (after T2) broadcasts from the leased address; the
	// maintainer gets there only when renewals fail, so drive the client.
	link, err := net.InterfaceByName("dhcp0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dhcp.New(dhcp.Config{Interface: "dhcp0", Index: link.Index, MAC: link.HardwareAddr, Hostname: "dhcp-box"})
	if err != nil {
		t.Fatal(err)
	}
	rebound, err := c.Rebind(ctxT(t), &dhcp.Lease{Address: leased, ServerID: netip.MustParseAddr(dhcpServerIP)})
	if err != nil {
		t.Fatalf("rebind: %v\ndnsmasq:\n%s", err, srv.logText(t))
	}
	if rebound.Address != leased || rebound.ServerID != netip.MustParseAddr(dhcpServerIP) || rebound.Duration != 2*time.Minute {
		t.Fatalf("rebound %+v", rebound)
	}
}

func TestSetupDHCPTimesOutNamingTheInterface(t *testing.T) {
	// A link with nobody serving DHCP on the other end.
	ipCmd(t, "link", "add", "dhcpc1", "type", "veth", "peer", "name", "dhcpc1s")
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", "dhcp1").Run()
		exec.Command("ip", "link", "del", "dhcpc1").Run()
	})
	ipCmd(t, "link", "set", "dhcpc1", "address", "02:00:00:d4:c0:02")
	ipCmd(t, "link", "set", "dhcpc1s", "up")
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := e.cl.Setup(ctx, &api.SetupRequest{Interfaces: []*api.Interface{{Mac: "02:00:00:d4:c0:02", Dhcp: true, Name: "dhcp1"}}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("setup: %v, want DeadlineExceeded", err)
	}
	for _, want := range []string{"dhcp on dhcp1 (02:00:00:d4:c0:02)", "no offer from a DHCP server", "DISCOVERs sent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if took := time.Since(begin); took > 4*time.Second {
		t.Fatalf("gave up after %v, the deadline was 3 s", took)
	}
	// Sent at 0, ~1 s and ~3 s (back-off from 1 s, ±1/8): no busy resending
	// as the deadline nears.
	if m := regexp.MustCompile(`\((\d+) DISCOVERs sent\)`).FindStringSubmatch(err.Error()); m == nil || len(m[1]) != 1 || m[1] > "3" {
		t.Fatalf("DISCOVERs sent: %v", m)
	}
}
