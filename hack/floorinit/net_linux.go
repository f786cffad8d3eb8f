package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sendOverNetwork configures eth0 and streams zeros to the host over TCP;
// spec is "<guest-ip>/<prefix>,<host-ip>:<port>,<MiB>".
func sendOverNetwork(port *os.File, spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return fmt.Errorf("vkavnet=%q: want <guest-ip>/<prefix>,<host-ip>:<port>,<MiB>", spec)
	}
	prefix, err := netip.ParsePrefix(parts[0])
	if err != nil {
		return fmt.Errorf("vkavnet address: %w", err)
	}
	mib, err := strconv.Atoi(parts[2])
	if err != nil {
		return fmt.Errorf("vkavnet size: %w", err)
	}
	if err := configure("eth0", prefix); err != nil {
		return err
	}
	conn, err := net.Dial("tcp", parts[1])
	if err != nil {
		return fmt.Errorf("dial host: %w", err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := conn.Write(chunk); err != nil {
			conn.Close()
			return fmt.Errorf("send: %w", err)
		}
	}
	// Power-off right after Close would drop what is still in the send
	// buffer: half-close, then wait for the host to close its end.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	io.Copy(io.Discard, conn)
	conn.Close()
	_, err = port.WriteString("sent\n")
	return err
}

// configure sets an IPv4 address and brings the interface up (SIOCSIF*
// ioctls; no netlink needed for one address).
func configure(iface string, prefix netip.Prefix) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("configure %s: %w", iface, err)
	}
	defer unix.Close(fd)
	set := func(req uint, fill func(*unix.Ifreq) error) error {
		ifr, err := unix.NewIfreq(iface)
		if err != nil {
			return err
		}
		if err := fill(ifr); err != nil {
			return err
		}
		return unix.IoctlIfreq(fd, req, ifr)
	}
	mask := net.CIDRMask(prefix.Bits(), 32)
	steps := []struct {
		req  uint
		fill func(*unix.Ifreq) error
	}{
		{unix.SIOCSIFADDR, func(r *unix.Ifreq) error { return r.SetInet4Addr(prefix.Addr().AsSlice()) }},
		{unix.SIOCSIFNETMASK, func(r *unix.Ifreq) error { return r.SetInet4Addr(mask) }},
		{unix.SIOCSIFFLAGS, func(r *unix.Ifreq) error { r.SetUint16(unix.IFF_UP); return nil }},
	}
	for _, st := range steps {
		if err := set(st.req, st.fill); err != nil {
			return fmt.Errorf("configure %s (ioctl %#x): %w", iface, st.req, err)
		}
	}
	return nil
}
