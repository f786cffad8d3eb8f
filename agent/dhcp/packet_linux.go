package dhcp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// systemTransports opens real sockets.
type systemTransports struct{}

func (systemTransports) unconfigured(_ context.Context, cfg *Config) (transport, error) {
	return openPacket(cfg.Index)
}

func (systemTransports) configured(ctx context.Context, cfg *Config, dst netip.Addr) (transport, error) {
	return openUDP(ctx, cfg.Interface, dst)
}

// htons is the network-order protocol number sockaddr_ll wants.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// udpToClientPort is a classic BPF program over an IPv4 packet (SOCK_DGRAM
// packet sockets filter from the network header): accept unfragmented UDP
// to port 68, drop the rest. As `tcpdump -dd udp dst port 68` minus the
// link-layer part.
var udpToClientPort = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},                       // A = protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 6, K: protoUDP}, // UDP?
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6},                       // A = flags, fragment offset
	{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 4, Jf: 0, K: 0x1fff},  // not the first fragment?
	{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},                      // X = IP header length
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 2},                       // A = UDP destination port
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: ClientPort},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0x40000}, // accept the whole packet
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},       // drop
}

// receiveBufferSize holds any packet of a 1500-byte MTU link with room to
// spare; the client asks for at most 1500-byte messages (option 57), and
// a larger, truncated packet fails its length check and is skipped.
const receiveBufferSize = 4096

// packetConn sends and receives IPv4 packets on one interface, for the
// time before it has an address.
type packetConn struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
	buf     []byte
	oob     []byte
}

func openPacket(ifindex int) (*packetConn, error) {
	// Protocol 0 receives nothing until bind, which comes after the filter
	// is attached: no unfiltered packet gets queued in between.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	fail := func(what string, err error) (*packetConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on interface %d: %s: %w", ifindex, what, err)
	}
	prog := unix.SockFprog{Len: uint16(len(udpToClientPort)), Filter: &udpToClientPort[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail("attach filter", err)
	}
	// Auxiliary data says when the UDP checksum is not filled in yet.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fail("enable auxdata", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return fail("bind", err)
	}
	// A non-blocking descriptor makes the file pollable: deadlines work.
	f := os.NewFile(uintptr(fd), fmt.Sprintf("dhcp-packet-%d", ifindex))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket on interface %d: %w", ifindex, err)
	}
	return &packetConn{f: f, rc: rc, ifindex: ifindex, buf: make([]byte, receiveBufferSize), oob: make([]byte, unix.CmsgSpace(64))}, nil
}

func (p *packetConn) Close() error { return p.f.Close() }

// Send broadcasts msg from 0.0.0.0:68 to 255.255.255.255:67.
func (p *packetConn) Send(_ context.Context, msg []byte) error {
	pkt := ipv4UDP(netip.IPv4Unspecified(), broadcastAddr, ClientPort, ServerPort, msg)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: p.ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	var serr error
	if err := p.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), pkt, 0, to)
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	return serr
}

// Receive returns the next DHCP payload sent to port 68 on the interface.
func (p *packetConn) Receive(ctx context.Context, deadline time.Time) ([]byte, error) {
	stop, err := setReadDeadline(ctx, p.f, deadline)
	if err != nil {
		return nil, err
	}
	defer stop()
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), p.buf, p.oob, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if rerr != nil {
			return nil, fmt.Errorf("receive on packet socket: %w", rerr)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // our own broadcast
		}
		payload, _, err := udpPayload(p.buf[:n], ClientPort, !checksumNotReady(p.oob[:oobn]))
		if err != nil {
			continue // not for us, or damaged: the filter lets some through
		}
		return payload, nil
	}
}

// checksumNotReady reports whether the packet's auxiliary data says its
// checksum is left to hardware that never ran (TP_STATUS_CSUMNOTREADY):
// a packet from a veth peer or a virtio-net host with checksum offload.
func checksumNotReady(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
		}
	}
	return false
}

// deadliner is an *os.File or a net.Conn.
type deadliner interface{ SetReadDeadline(time.Time) error }

// setReadDeadline sets the earlier of deadline and ctx's, and interrupts
// the read when ctx is cancelled; stop undoes the latter.
func setReadDeadline(ctx context.Context, d deadliner, deadline time.Time) (stop func() bool, err error) {
	if cd, ok := ctx.Deadline(); ok && cd.Before(deadline) {
		deadline = cd
	}
	if err := d.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	return context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Unix(1, 0)) }), nil
}
