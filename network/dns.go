package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Resolver files read by HostNameservers. The second is where
// systemd-resolved lists the real upstream servers when the first only
// points at its loopback stub (127.0.0.53), which a VM cannot reach.
const (
	ResolvConf         = "/etc/resolv.conf"
	ResolvedUpstream   = "/run/systemd/resolve/resolv.conf"
	maxGuestNameserver = 3 // MAXNS in glibc's resolv.h: more are ignored
)

// HostNameservers returns the host's nameservers that a VM can use: those
// of the first file in paths (default ResolvConf, then ResolvedUpstream)
// that lists any, without loopback and unspecified addresses, at most three.
// A missing file is skipped; no usable server at all is not an error (the
// guest then has no DNS, which the caller may override).
func HostNameservers(paths ...string) ([]netip.Addr, error) {
	if len(paths) == 0 {
		paths = []string{ResolvConf, ResolvedUpstream}
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read nameservers from %s: %w", path, err)
		}
		if servers := parseNameservers(data); len(servers) > 0 {
			return servers, nil
		}
	}
	return nil, nil
}

func parseNameservers(data []byte) []netip.Addr {
	var servers []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// An IPv6 server may carry a zone ("fe80::1%eth0"): meaningless
		// inside a VM, so such servers are dropped with the loopback ones.
		addr, err := netip.ParseAddr(fields[1])
		if err != nil || addr.Zone() != "" || addr.IsLoopback() || addr.IsUnspecified() {
			continue
		}
		servers = append(servers, addr.Unmap())
		if len(servers) == maxGuestNameserver {
			break
		}
	}
	return servers
}
