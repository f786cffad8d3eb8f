// Package platform opens the Network of the host's operating system: the
// bridge network on Linux (QEMU backend), vz's NAT on macOS. Callers that
// do not care which stay free of build tags.
package platform

import "net/netip"

// Options are what a node or the CLI configures; each platform uses the
// parts that apply to it.
type Options struct {
	// StateDir is the node's state root (Linux: leases and names).
	StateDir string
	// Subnet for the VMs (Linux); zero means the bridge default.
	Subnet netip.Prefix
	// DNS for the guests; nil means the host's (Linux) or DHCP's (macOS).
	DNS []netip.Addr
	// EnableIPForward turns on IPv4 forwarding in the node's namespace
	// (Linux), which outbound VM traffic needs.
	EnableIPForward bool
	// NodeNetns is the path of the node's network namespace (Linux);
	// empty means this process's. Tests pass a namespace of their own.
	NodeNetns string
}
