package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/network"
)

// parsePublish reads `-p` values as docker run does:
// [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]; the host address defaults
// to every address (0.0.0.0), as Docker's does.
func parsePublish(specs []string) ([]network.PublishedPort, error) {
	var out []network.PublishedPort
	seen := map[string]bool{}
	for _, spec := range specs {
		p, err := parseOnePublish(spec)
		if err != nil {
			return nil, fmt.Errorf("-p %q: %w", spec, err)
		}
		key := fmt.Sprintf("%s/%v:%d", p.Protocol, p.HostIP, p.HostPort)
		if seen[key] {
			return nil, fmt.Errorf("-p %q: host port %d/%s published twice", spec, p.HostPort, strings.ToLower(p.Protocol))
		}
		seen[key] = true
		out = append(out, p)
	}
	return out, nil
}

func parseOnePublish(spec string) (network.PublishedPort, error) {
	p := network.PublishedPort{Protocol: "TCP", HostIP: netip.IPv4Unspecified()}
	rest, proto, hasProto := strings.Cut(spec, "/")
	if hasProto {
		switch strings.ToLower(proto) {
		case "tcp":
		case "udp":
			p.Protocol = "UDP"
		default:
			return p, fmt.Errorf("protocol %q: want tcp or udp", proto)
		}
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return p, fmt.Errorf("host address %q: want an IPv4 address", parts[0])
		}
		p.HostIP = ip
		parts = parts[1:]
	default:
		return p, fmt.Errorf("want [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]")
	}
	var err error
	if p.HostPort, err = portNumber(parts[0]); err != nil {
		return p, fmt.Errorf("host port: %w", err)
	}
	if p.Port, err = portNumber(parts[1]); err != nil {
		return p, fmt.Errorf("container port: %w", err)
	}
	return p, nil
}

func portNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// publishedString lists a container's published ports as `ps` shows them.
func publishedString(ps []network.PublishedPort) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", p.HostIP, p.HostPort, p.Port, strings.ToLower(p.Protocol)))
	}
	return strings.Join(out, ", ")
}
