// Package netns creates the network namespace the control plane (and the
// node under test) lives in, joined to the host by a veth pair.
//
// Why a namespace at all: kube-apiserver refuses to proxy to a node at a
// loopback address ("address not allowed"), and the host may have no other
// address we can hand out. Inside the namespace the node gets a real,
// non-loopback InternalIP that both the apiserver (same namespace) and the
// host (through the veth) can reach, and the cluster's ports never touch the
// host's own interfaces.
//
// Setup is done with iproute2's `ip` (named namespaces under /run/netns are
// its convention, so `ip netns exec` works for humans too); entering the
// namespace to start processes is done with setns(2) on a locked thread.
package netns

import (
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes the namespace and its link to the host.
type Config struct {
	Name      string // namespace name (/run/netns/<Name>)
	HostIP    net.IP // host end of the veth
	IP        net.IP // namespace end of the veth: the cluster's address
	PrefixLen int    // shared by both ends
}

// HostVeth and PeerVeth name the pair after the namespace: deterministic (so
// a later `down` or a stale-cleanup finds them) and within IFNAMSIZ (15).
func (c Config) HostVeth() string { return fmt.Sprintf("vk%08xh", crc32.ChecksumIEEE([]byte(c.Name))) }

// PeerVeth is the namespace end of the veth pair.
func (c Config) PeerVeth() string { return fmt.Sprintf("vk%08xn", crc32.ChecksumIEEE([]byte(c.Name))) }

// Path is where iproute2 keeps the namespace's bind mount.
func Path(name string) string { return "/run/netns/" + name }

// Validate checks the addresses before anything is changed.
func (c Config) Validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "/ \t\n") || len(c.Name) > 64 {
		return fmt.Errorf("invalid netns name %q", c.Name)
	}
	if c.HostIP.To4() == nil || c.IP.To4() == nil {
		return fmt.Errorf("--host-ip %v and --ip %v must both be IPv4 addresses", c.HostIP, c.IP)
	}
	if c.PrefixLen < 8 || c.PrefixLen > 30 {
		return fmt.Errorf("prefix length %d out of range 8..30", c.PrefixLen)
	}
	if c.HostIP.Equal(c.IP) {
		return fmt.Errorf("--host-ip and --ip are both %v", c.IP)
	}
	mask := net.CIDRMask(c.PrefixLen, 32)
	if !c.HostIP.Mask(mask).Equal(c.IP.Mask(mask)) {
		return fmt.Errorf("--host-ip %v and --ip %v are not in the same /%d", c.HostIP, c.IP, c.PrefixLen)
	}
	if c.IP.IsLoopback() || c.HostIP.IsLoopback() {
		return errors.New("the cluster address must not be a loopback address (kube-apiserver refuses to proxy to it)")
	}
	return nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// Inode identifies the namespace instance currently named name (0 if none):
// a namespace recreated under the same name by another cluster has another
// inode, which is how a stale cluster dir knows the name is no longer its own.
func Inode(name string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(Path(name), &st); err != nil {
		return 0
	}
	return st.Ino
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// Setup creates the namespace and veth pair, replacing a stale one of the
// same name. It refuses if the subnet is already on some other interface
// (another cluster, or the host's own network) since routing would be ambiguous.
func Setup(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("`ip` (iproute2) not found in PATH: install it (apt-get install iproute2)")
	}
	if err := Teardown(c); err != nil {
		return fmt.Errorf("removing stale netns %s: %w", c.Name, err)
	}
	subnet := &net.IPNet{IP: c.IP.Mask(net.CIDRMask(c.PrefixLen, 32)), Mask: net.CIDRMask(c.PrefixLen, 32)}
	if dev := interfaceInSubnet(subnet); dev != "" {
		return fmt.Errorf("subnet %v is already in use on interface %s (another cluster? choose other --host-ip/--ip)", subnet, dev)
	}
	host, peer := c.HostVeth(), c.PeerVeth()
	hostCIDR := fmt.Sprintf("%s/%d", c.HostIP, c.PrefixLen)
	nsCIDR := fmt.Sprintf("%s/%d", c.IP, c.PrefixLen)
	steps := [][]string{
		{"netns", "add", c.Name},
		{"link", "add", host, "type", "veth", "peer", "name", peer, "netns", c.Name},
		{"addr", "add", hostCIDR, "dev", host},
		{"link", "set", host, "up"},
		// etcd and the components' health ports listen on 127.0.0.1 inside.
		{"-n", c.Name, "link", "set", "lo", "up"},
		{"-n", c.Name, "addr", "add", nsCIDR, "dev", peer},
		{"-n", c.Name, "link", "set", peer, "up"},
		// Without a default route kube-apiserver cannot pick an advertise
		// address on its own; with one, routing back to the host works too.
		{"-n", c.Name, "route", "add", "default", "via", c.HostIP.String()},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			_ = Teardown(c)
			return fmt.Errorf("setting up netns %s: %w", c.Name, err)
		}
	}
	return nil
}

// interfaceInSubnet returns a host interface that already has an address in
// subnet, or "".
func interfaceInSubnet(subnet *net.IPNet) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && subnet.Contains(n.IP) {
				return i.Name
			}
		}
	}
	return ""
}

// Teardown deletes the namespace and the host end of the veth; both steps
// are no-ops when already gone. Processes still inside keep a namespace alive
// (without its name), so callers stop them first.
func Teardown(c Config) error {
	if Exists(c.Name) {
		if err := ip("netns", "delete", c.Name); err != nil {
			return err
		}
	}
	// Deleting the namespace destroys the peer and with it the pair, but the
	// kernel does so asynchronously (measured: the host end lingers for a few
	// ms); a half-finished Setup may also have left the host end alone.
	host := c.HostVeth()
	for deadline := time.Now().Add(3 * time.Second); linkExists(host) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if linkExists(host) {
		if err := ip("link", "delete", host); err != nil && linkExists(host) {
			return err
		}
	}
	return nil
}

// Do runs fn on an OS thread that has joined the namespace. Processes that fn
// starts (fork happens on the calling thread) are born inside it, and so are
// sockets it opens. The thread is never returned to the Go scheduler: the
// goroutine exits while still locked, so the runtime destroys the thread
// instead of reusing it elsewhere.
func Do(name string, fn func() error) error {
	f, err := os.Open(Path(name))
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", name, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go doLocked(f, name, fn, errc)
	return <-errc
}

// doLocked is Do's goroutine. It must not run on the main thread: the runtime
// cannot destroy that one (it parks it for good), and /proc/<pid>/ns/net —
// which Pids, and so `down`, reads — is the main thread's namespace, so the
// whole process would look as if it lived inside and get stopped with it.
func doLocked(f *os.File, name string, fn func() error, errc chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// Keep holding the main thread while a fresh goroutine does the
		// work: it cannot be scheduled here, so it gets another thread.
		done := make(chan struct{})
		go func() {
			defer close(done)
			doLocked(f, name, fn, errc)
		}()
		<-done
		runtime.UnlockOSThread()
		return
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		errc <- fmt.Errorf("entering netns %s: %w", name, err)
		return
	}
	errc <- fn()
}

// Enter moves the calling goroutine's thread into the namespace for good.
// Only for callers about to execve(2): the new program keeps the namespace.
func Enter(name string) error {
	f, err := os.Open(Path(name))
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", name, err)
	}
	defer f.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering netns %s: %w", name, err)
	}
	return nil
}

// Pids lists the processes whose network namespace is the named one, so that
// `down` can also stop what was started with `cluster exec` (the node).
func Pids(name string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(Path(name), &want); err != nil {
		return nil, fmt.Errorf("stat netns %s: %w", name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || fmt.Sprint(pid) != e.Name() {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue // gone, or a kernel thread
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
