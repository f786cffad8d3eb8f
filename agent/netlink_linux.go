package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// A minimal rtnetlink client: list links, set a link's name, MTU and state,
// add addresses and routes. vishvananda/netlink measured +0.6 MB of agent
// RSS, within the budget; four message types are simply not worth a
// library (docs/decisions.md).

// netlinkTimeout bounds a reply from the kernel, which answers at once;
// it only guards against a lost reply hanging Setup.
const netlinkTimeout = 5 // seconds

type rtnl struct {
	fd  int
	seq uint32
}

func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	tv := unix.Timeval{Sec: netlinkTimeout}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set rtnetlink timeout: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (r *rtnl) Close() error { return unix.Close(r.fd) }

// nlAttr appends one route attribute (struct rtattr + data, 4-aligned).
func nlAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nlUint32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// do sends one request and returns the payloads of the replies. Dumps end
// at NLMSG_DONE; other requests ask for an acknowledgement.
func (r *rtnl) do(typ, flags uint16, body []byte) ([][]byte, error) {
	r.seq++
	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	flags |= unix.NLM_F_REQUEST
	if !dump {
		flags |= unix.NLM_F_ACK
	}
	msg := make([]byte, 0, unix.NLMSG_HDRLEN+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.NLMSG_HDRLEN+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags)
	msg = binary.NativeEndian.AppendUint32(msg, r.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send rtnetlink message %d: %w", typ, err)
	}
	var out [][]byte
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive rtnetlink reply to %d: %w", typ, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse rtnetlink reply to %d: %w", typ, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != r.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("short rtnetlink error reply to %d", typ)
				}
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					return nil, syscall.Errno(-code)
				}
				return out, nil // the acknowledgement
			default:
				out = append(out, bytes.Clone(m.Data))
			}
		}
	}
}

// ifinfomsg builds struct ifinfomsg.
func ifinfomsg(index int32, flags, change uint32) []byte {
	b := make([]byte, 0, unix.SizeofIfInfomsg)
	b = append(b, unix.AF_UNSPEC, 0)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	b = binary.NativeEndian.AppendUint32(b, flags)
	return binary.NativeEndian.AppendUint32(b, change)
}

// nlLink is what the agent needs to know about a network device.
type nlLink struct {
	index int32
	name  string
	mac   net.HardwareAddr
	flags uint32
	mtu   uint32
}

func (r *rtnl) links() ([]nlLink, error) {
	replies, err := r.do(unix.RTM_GETLINK, unix.NLM_F_DUMP, ifinfomsg(0, 0, 0))
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var links []nlLink
	for _, b := range replies {
		if len(b) < unix.SizeofIfInfomsg {
			continue
		}
		l := nlLink{
			index: int32(binary.NativeEndian.Uint32(b[4:8])),
			flags: binary.NativeEndian.Uint32(b[8:12]),
		}
		for typ, data := range parseAttrs(b[unix.SizeofIfInfomsg:]) {
			switch typ {
			case unix.IFLA_IFNAME:
				l.name = string(bytes.TrimRight(data, "\x00"))
			case unix.IFLA_ADDRESS:
				l.mac = net.HardwareAddr(bytes.Clone(data))
			case unix.IFLA_MTU:
				if len(data) >= 4 {
					l.mtu = binary.NativeEndian.Uint32(data)
				}
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// parseAttrs yields the attributes of a message body.
func parseAttrs(b []byte) func(yield func(uint16, []byte) bool) {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint16(b[0:2]))
			typ := binary.NativeEndian.Uint16(b[2:4])
			if l < 4 || l > len(b) {
				return
			}
			if !yield(typ&^unix.NLA_F_NESTED, b[4:l]) {
				return
			}
			al := (l + 3) &^ 3
			if al > len(b) {
				return
			}
			b = b[al:]
		}
	}
}

// setLinkUp brings a link up or down.
func (r *rtnl) setLinkUp(index int32, up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	if _, err := r.do(unix.RTM_NEWLINK, 0, ifinfomsg(index, flags, unix.IFF_UP)); err != nil {
		return fmt.Errorf("set link %d up=%v: %w", index, up, err)
	}
	return nil
}

// setLinkAttrs renames a (down) link and/or sets its MTU.
func (r *rtnl) setLinkAttrs(index int32, name string, mtu uint32) error {
	b := ifinfomsg(index, 0, 0)
	if name != "" {
		b = nlAttr(b, unix.IFLA_IFNAME, append([]byte(name), 0))
	}
	if mtu != 0 {
		b = nlAttr(b, unix.IFLA_MTU, nlUint32(mtu))
	}
	if _, err := r.do(unix.RTM_NEWLINK, 0, b); err != nil {
		return fmt.Errorf("set link %d name=%q mtu=%d: %w", index, name, mtu, err)
	}
	return nil
}

// setLinkMAC gives a link another hardware address; virtio_net passes it
// to the device (VIRTIO_NET_CTRL_MAC_ADDR_SET), whose filter follows.
func (r *rtnl) setLinkMAC(index int32, mac net.HardwareAddr) error {
	if _, err := r.do(unix.RTM_NEWLINK, 0, nlAttr(ifinfomsg(index, 0, 0), unix.IFLA_ADDRESS, mac)); err != nil {
		return fmt.Errorf("set link %d address %s: %w", index, mac, err)
	}
	return nil
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addAddr adds (or replaces) an address on a link.
func (r *rtnl) addAddr(index int32, p netip.Prefix) error {
	a := p.Addr()
	b := []byte{family(a), byte(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE}
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	b = nlAttr(b, unix.IFA_LOCAL, a.AsSlice())
	b = nlAttr(b, unix.IFA_ADDRESS, a.AsSlice())
	if a.Is4() && p.Bits() < 31 {
		bcast := a.As4()
		mask := net.CIDRMask(p.Bits(), 32)
		for i := range bcast {
			bcast[i] |= ^mask[i]
		}
		b = nlAttr(b, unix.IFA_BROADCAST, bcast[:])
	}
	if _, err := r.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b); err != nil {
		return fmt.Errorf("add address %s to link %d: %w", p, index, err)
	}
	return nil
}

// addRoute adds (or replaces) a route in the main table. oif may be 0
// when gw is on a connected subnet.
func (r *rtnl) addRoute(dst netip.Prefix, gw netip.Addr, oif int32) error {
	fam := family(dst.Addr())
	scope := byte(unix.RT_SCOPE_UNIVERSE)
	if !gw.IsValid() {
		scope = unix.RT_SCOPE_LINK
	}
	b := []byte{fam, byte(dst.Bits()), 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, scope, unix.RTN_UNICAST}
	b = binary.NativeEndian.AppendUint32(b, 0)
	if dst.Bits() > 0 {
		b = nlAttr(b, unix.RTA_DST, dst.Addr().AsSlice())
	}
	if gw.IsValid() {
		b = nlAttr(b, unix.RTA_GATEWAY, gw.AsSlice())
	}
	if oif != 0 {
		b = nlAttr(b, unix.RTA_OIF, nlUint32(uint32(oif)))
	}
	if _, err := r.do(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b); err != nil {
		return fmt.Errorf("add route %s via %v dev %d: %w", dst, gw, oif, err)
	}
	return nil
}

// ErrNoLoopback is returned when the network namespace has no loopback.
var ErrNoLoopback = errors.New("no loopback device")

// LoopbackUp brings the loopback device up (a fresh guest starts with it
// down, and Forward dials 127.0.0.1).
func LoopbackUp() error {
	nl, err := openRtnl()
	if err != nil {
		return err
	}
	defer nl.Close()
	links, err := nl.links()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.flags&unix.IFF_LOOPBACK != 0 {
			return nl.setLinkUp(l.index, true)
		}
	}
	return ErrNoLoopback
}
