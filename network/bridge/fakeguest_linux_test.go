package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/tap"
)

// fakeGuest stands in for a VM: it holds the VM's tap device as QEMU
// would and speaks just enough Ethernet, ARP, IPv4 and ICMP, with the
// guest configuration of its endpoint, to answer pings and send them.
type fakeGuest struct {
	f      *os.File
	mac    net.HardwareAddr
	ip     netip.Addr
	subnet netip.Prefix
	gw     netip.Addr

	mu      sync.Mutex
	neigh   map[netip.Addr]net.HardwareAddr
	replies chan echoFrom
	done    chan struct{}
}

type echoFrom struct {
	src     netip.Addr
	id, seq uint16
}

const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// startGuest opens ep's tap in the backend namespace and serves it until
// the test ends.
func startGuest(t *testing.T, ep *network.Endpoint) *fakeGuest {
	t.Helper()
	f, err := tap.Open(ep.NIC.Attachment.Netns, ep.NIC.Attachment.Tap)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(ep.Guest.MAC)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGuest{
		f: f, mac: mac, ip: ep.Guest.Address.Addr(), subnet: ep.Guest.Address.Masked(), gw: ep.Guest.Gateway,
		neigh: map[netip.Addr]net.HardwareAddr{}, replies: make(chan echoFrom, 16), done: make(chan struct{}),
	}
	go g.serve()
	t.Cleanup(func() {
		f.Close() // ends serve's Read
		<-g.done
	})
	return g
}

func (g *fakeGuest) serve() {
	defer close(g.done)
	buf := make([]byte, 65536)
	for {
		n, err := g.f.Read(buf)
		if err != nil {
			return
		}
		g.handle(buf[:n])
	}
}

func (g *fakeGuest) handle(frame []byte) {
	if len(frame) < 14 {
		return
	}
	dst, src := net.HardwareAddr(frame[0:6]), net.HardwareAddr(frame[6:12])
	if !bytes.Equal(dst, g.mac) && !bytes.Equal(dst, broadcastMAC) {
		return
	}
	payload := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherARP:
		g.handleARP(payload)
	case etherIPv4:
		g.handleIPv4(src, payload)
	}
}

// handleARP learns the sender and answers requests for our address
// (RFC 826; Ethernet/IPv4 only).
func (g *fakeGuest) handleARP(p []byte) {
	if len(p) < 28 || binary.BigEndian.Uint16(p[0:]) != 1 || binary.BigEndian.Uint16(p[2:]) != etherIPv4 {
		return
	}
	op := binary.BigEndian.Uint16(p[6:])
	sha := net.HardwareAddr(bytes.Clone(p[8:14]))
	spa := netip.AddrFrom4([4]byte(p[14:18]))
	tpa := netip.AddrFrom4([4]byte(p[24:28]))
	g.mu.Lock()
	g.neigh[spa] = sha
	g.mu.Unlock()
	if op == 1 && tpa == g.ip {
		g.write(sha, etherARP, arpPacket(2, g.mac, g.ip, sha, spa))
	}
}

func arpPacket(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(p[2:], etherIPv4)
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], op)
	copy(p[8:], sha)
	s, t := spa.As4(), tpa.As4()
	copy(p[14:], s[:])
	copy(p[18:], tha)
	copy(p[24:], t[:])
	return p
}

// handleIPv4 answers echo requests to our address and collects replies.
func (g *fakeGuest) handleIPv4(srcMAC net.HardwareAddr, p []byte) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 1 /* ICMP */ {
		return
	}
	ihl, total := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:]))
	if total > len(p) || ihl+8 > total {
		return
	}
	src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	if dst != g.ip {
		return
	}
	icmp := p[ihl:total]
	id, seq := binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:])
	switch icmp[0] {
	case 8:
		g.write(srcMAC, etherIPv4, ipv4Packet(g.ip, src, icmpEcho(0, id, seq, icmp[8:])))
	case 0:
		select {
		case g.replies <- echoFrom{src: src, id: id, seq: seq}:
		default:
		}
	}
}

func ipv4Packet(src, dst netip.Addr, icmp []byte) []byte {
	p := make([]byte, 20+len(icmp))
	p[0] = 0x45 // version 4, 5-word header
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], 0x4000) // don't fragment
	p[8], p[9] = 64, 1                        // TTL, ICMP
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	copy(p[20:], icmp)
	return p
}

func (g *fakeGuest) write(dst net.HardwareAddr, etherType uint16, payload []byte) error {
	frame := make([]byte, 14+len(payload))
	copy(frame[0:], dst)
	copy(frame[6:], g.mac)
	binary.BigEndian.PutUint16(frame[12:], etherType)
	copy(frame[14:], payload)
	_, err := g.f.Write(frame)
	return err
}

// resolve returns hop's MAC, asking by ARP as a guest kernel would.
func (g *fakeGuest) resolve(ctx context.Context, hop netip.Addr) (net.HardwareAddr, error) {
	for {
		g.mu.Lock()
		mac, ok := g.neigh[hop]
		g.mu.Unlock()
		if ok {
			return mac, nil
		}
		if err := g.write(broadcastMAC, etherARP, arpPacket(1, g.mac, g.ip, make(net.HardwareAddr, 6), hop)); err != nil {
			return nil, fmt.Errorf("send ARP request for %v: %w", hop, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no ARP reply for %v: %w", hop, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping sends echo requests to dst (through the gateway when dst is off
// the subnet) until a reply comes or timeout passes.
func (g *fakeGuest) ping(dst netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hop := dst
	if !g.subnet.Contains(dst) {
		hop = g.gw
	}
	mac, err := g.resolve(ctx, hop)
	if err != nil {
		return fmt.Errorf("guest %v ping %v: %w", g.ip, dst, err)
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	for seq := uint16(1); ; seq++ {
		if err := g.write(mac, etherIPv4, ipv4Packet(g.ip, dst, icmpEcho(8, id, seq, []byte("vkav-guest")))); err != nil {
			return fmt.Errorf("guest %v ping %v: %w", g.ip, dst, err)
		}
		wait := time.After(300 * time.Millisecond)
		for waiting := true; waiting; {
			select {
			case r := <-g.replies:
				if r.src == dst && r.id == id {
					return nil
				}
			case <-wait:
				waiting = false
			case <-ctx.Done():
				return fmt.Errorf("guest %v ping %v: %w", g.ip, dst, errors.New("no echo reply"))
			}
		}
	}
}
