package bridge

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/network/netns"
)

// requirePrivileges fails (never skips) when the test cannot do its work.
func requirePrivileges(t *testing.T) {
	t.Helper()
	testenv.Needs(t, "root (network namespaces, bridges, taps)")
	if os.Geteuid() != 0 {
		t.Fatal("bridge tests create network namespaces, bridges and taps: run them as root (sudo go test ./network/...)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("tap devices need /dev/net/tun (modprobe tun): %v", err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("outbound NAT needs nft: apt-get install nftables")
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNamespace creates a namespace standing in for the node's (or an
// outside host's), with lo up, removed when the test ends. The host's own
// namespace is never changed.
func newNamespace(t testing.TB, role string) string {
	t.Helper()
	path, err := netns.Create("vkavt-" + role + "-" + randomHex(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(path); err != nil {
			t.Errorf("remove test namespace: %v", err)
		}
	})
	h := handleIn(t, path)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in %s: %v", path, err)
	}
	return path
}

// handleIn is a netlink handle in the namespace at path, closed at the end.
func handleIn(t testing.TB, path string) *netlink.Handle {
	t.Helper()
	h, err := openHandle(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// testConfig is a network on its own state root, node namespace and subnet
// 10.99.<slot>.0/24 (link net 169.254.99.<4*slot>/30), so no two tests
// share anything.
func testConfig(t *testing.T, slot int) Config {
	t.Helper()
	return Config{
		StateDir:  t.TempDir(),
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.99.%d.0/24", slot)),
		LinkNet:   netip.MustParsePrefix(fmt.Sprintf("169.254.99.%d/30", 4*slot)),
		DNS:       []netip.Addr{netip.MustParseAddr("10.99.255.53")},
		NodeNetns: newNamespace(t, "node"),
		Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// newNetwork sets up cfg's network and removes it, whatever the test's
// outcome, when the test ends.
func newNetwork(t *testing.T, cfg Config) *Network {
	t.Helper()
	t.Cleanup(func() {
		if err := Cleanup(context.Background(), cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	n, err := New(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pingFrom sends ICMP echo requests to dst from a raw socket opened in the
// namespace at nsPath and waits for a reply, up to timeout.
func pingFrom(nsPath string, dst netip.Addr, timeout time.Duration) error {
	var fd int
	err := netns.Do(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return fmt.Errorf("raw ICMP socket in %s: %w", nsPath, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		if err := unix.Sendto(fd, icmpEcho(8, id, seq, []byte("vkav-ping")), 0, to); err != nil {
			return fmt.Errorf("send echo to %v: %w", dst, err)
		}
		for sent := time.Now(); time.Since(sent) < 500*time.Millisecond; {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("receive from %v: %w", dst, err)
			}
			src, ok := from.(*unix.SockaddrInet4)
			if !ok || netip.AddrFrom4(src.Addr) != dst || n < 20 {
				continue
			}
			// Raw IPv4 sockets deliver the IP header too.
			icmp := buf[int(buf[0]&0x0f)*4 : n]
			if len(icmp) >= 8 && icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %v within %v", dst, timeout)
}

// icmpEcho builds an ICMP echo request (typ 8) or reply (typ 0).
func icmpEcho(typ byte, id, seq uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], data)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// linkIn returns the link called name in the namespace at path.
func linkIn(t *testing.T, path, name string) netlink.Link {
	t.Helper()
	link, err := handleIn(t, path).LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, path, err)
	}
	return link
}

// linkExists reports whether name exists in the namespace at path.
func linkExists(t *testing.T, path, name string) bool {
	t.Helper()
	_, err := handleIn(t, path).LinkByName(name)
	if err != nil && !isNotFound(err) {
		t.Fatalf("look up %s in %s: %v", name, path, err)
	}
	return err == nil
}

// nftTableExists reports whether the nft table exists in the namespace.
func nftTableExists(t *testing.T, nsPath, table string) bool {
	t.Helper()
	out, err := runIn(context.Background(), nsPath, "", "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "table ip "+table {
			return true
		}
	}
	return false
}

// addVethPair joins the namespaces at a and b with a veth pair whose ends
// get addresses aAddr and bAddr (CIDR).
func addVethPair(t *testing.T, a, aName, aAddr, b, bName, bAddr string) {
	t.Helper()
	bf, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	ha, hb := handleIn(t, a), handleIn(t, b)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(int(bf.Fd()))}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s/%s: %v", aName, bName, err)
	}
	for _, end := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{ha, aName, aAddr}, {hb, bName, bAddr}} {
		link, err := end.h.LinkByName(end.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := netlink.ParseAddr(end.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := end.h.AddrAdd(link, addr); err != nil {
			t.Fatalf("address %s on %s: %v", end.addr, end.name, err)
		}
		if err := end.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
}

// isUp reports the administrative state of link.
func isUp(link netlink.Link) bool { return link.Attrs().Flags&net.FlagUp != 0 }
