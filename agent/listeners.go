package agent

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
)

// listenPort is one port a guest process listens on.
type listenPort struct {
	proto string // "TCP" or "UDP"
	port  uint16
}

// parseProcNet reads a /proc/net/{tcp,tcp6,udp,udp6} table and returns the
// ports bound to an address other than loopback that accept new peers: TCP
// sockets in LISTEN, unconnected UDP sockets.
func parseProcNet(r io.Reader, proto string, v6 bool) ([]listenPort, error) {
	var out []listenPort
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		local, remote, state := f[1], f[2], f[3]
		addr, portHex, ok := strings.Cut(local, ":")
		if !ok {
			return nil, fmt.Errorf("/proc/net line %q: bad local address", sc.Text())
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || port == 0 {
			continue
		}
		switch proto {
		case "TCP":
			if state != "0A" { // TCP_LISTEN
				continue
			}
		case "UDP":
			// Bound but not connected: a server. Connected sockets are
			// clients of one peer.
			if _, rport, _ := strings.Cut(remote, ":"); rport != "0000" {
				continue
			}
		}
		if isLoopbackHex(addr, v6) {
			continue
		}
		out = append(out, listenPort{proto: proto, port: uint16(port)})
	}
	return out, sc.Err()
}

// isLoopbackHex reports a /proc/net address (hex, in the kernel's byte
// order: 32-bit words in host order) on the loopback.
func isLoopbackHex(addr string, v6 bool) bool {
	b, err := hex.DecodeString(addr)
	if err != nil {
		return false
	}
	// Guests are little-endian (x86_64, arm64): each 32-bit word of the
	// address prints with its bytes reversed.
	if !v6 {
		// 127.0.0.1 prints as 0100007F: the first octet is the last byte.
		return len(b) == 4 && b[3] == 127
	}
	// ::1 prints as 00000000000000000000000001000000; ::ffff:127.0.0.1
	// as 0000000000000000FFFF00000100007F.
	loop := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	mapped := len(b) == 16 && bytes.Equal(b[:8], make([]byte, 8)) && bytes.Equal(b[8:12], []byte{0xff, 0xff, 0, 0}) && b[15] == 127
	return bytes.Equal(b, loop) || mapped
}

// sortPorts sorts and deduplicates (a port bound on v4 and v6 is one).
func sortPorts(ps []listenPort) []listenPort {
	slices.SortFunc(ps, func(a, b listenPort) int {
		if c := strings.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		return int(a.port) - int(b.port)
	})
	return slices.Compact(ps)
}

// portsVersion names a set of ports.
func portsVersion(ps []listenPort) string {
	h := fnv.New64a()
	for _, p := range ps {
		fmt.Fprintf(h, "%s/%d,", p.proto, p.port)
	}
	return strconv.FormatUint(h.Sum64(), 36)
}
