// Package network gives every VM one address on a host-side network and
// describes, as plain data, how to plug the VM in (a vm.NIC) and how the
// guest must configure itself (GuestConfig, pushed by the agent's Setup).
//
// The package itself is platform-neutral: the Network interface, the
// identities derived from a VM id (MAC, tap name) and a file-backed address
// allocator shared by every process using one state root. Implementations
// live in subpackages: network/bridge (Linux: a bridge and one tap per VM in
// a private network namespace) and network/vznat (macOS: vz's built-in NAT,
// addresses from DHCP). network/platform picks the one for this OS.
package network

import (
	"context"
	"errors"
	"net/netip"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Network hands out one endpoint per VM id.
//
// The network outlives the process that set it up: VMs keep running while
// the node restarts, so Close only releases this process's handles and a
// new instance on the same state root re-attaches to what exists. Teardown
// removes everything.
type Network interface {
	// Attach returns the endpoint of VM id, creating it if needed. It is
	// idempotent: the same id gets the same address and MAC, also from
	// another process or after a restart.
	Attach(ctx context.Context, id string) (*Endpoint, error)
	// Detach removes the VM's host-side device and frees its address.
	// Detaching an unknown id is not an error.
	Detach(ctx context.Context, id string) error
	// Check reports whether the network is in working order; the node's
	// health (Ping) and `doctor` call it.
	Check(ctx context.Context) error
	// Close releases this process's resources; the network stays.
	Close(ctx context.Context) error
	// Teardown removes the network and every endpoint, then closes.
	Teardown(ctx context.Context) error
}

// Endpoint is one VM's place on the network.
type Endpoint struct {
	// ID is the VM id the endpoint was attached for.
	ID string `json:"id"`
	// NIC goes into the VM spec.
	NIC vm.NIC `json:"nic"`
	// Guest is what the guest agent configures (SetupRequest.interfaces,
	// routes and dns).
	Guest GuestConfig `json:"guest"`
	// IP is the VM's address; invalid (zero) when the guest obtains it
	// by DHCP and the host learns it only from the agent.
	IP netip.Addr `json:"ip,omitzero"`
}

// GuestConfig is the guest side of an endpoint as plain data.
type GuestConfig struct {
	// MAC selects the guest's device; it equals NIC.MAC.
	MAC string `json:"mac"`
	// Address is the interface address in CIDR form (e.g. 10.213.0.5/22);
	// invalid with DHCP.
	Address netip.Prefix `json:"address,omitzero"`
	// Gateway is the default route's next hop; invalid with DHCP.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// MTU of the guest interface.
	MTU int `json:"mtu"`
	// DNS lists nameservers; empty with DHCP means "use what DHCP says".
	DNS []netip.Addr `json:"dns,omitempty"`
	// DHCP asks the guest to obtain its address from a DHCP server.
	DHCP bool `json:"dhcp,omitempty"`
}

// DefaultMTU is the MTU of bridge, taps and guests: plain Ethernet.
const DefaultMTU = 1500

var (
	// ErrInvalidID is returned for a VM id that is not a valid vm.Spec ID.
	ErrInvalidID = errors.New("invalid VM id")
	// ErrExhausted is returned when the subnet has no free address.
	ErrExhausted = errors.New("no free address in subnet")
	// ErrClosed is returned by a Network after Close or Teardown.
	ErrClosed = errors.New("network closed")
)
