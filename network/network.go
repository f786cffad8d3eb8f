// Package network gives every VM one address on a host-side network and
// describes, as plain data, how to plug the VM in (a vm.NIC) and how the
// guest must configure itself (GuestConfig, pushed by the agent's Setup).
//
// The package itself is platform-neutral: the Network interface, the
// identities derived from a VM id (MAC) and a file-backed address allocator
// shared by every process using one state root. The implementation is
// network/switchnet: every VM plugs into the node's user-space switch
// (network/vswitch), on Linux and macOS alike.
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
	// Attach returns the endpoint of VM id in pod opts.Pod, creating it if
	// needed. It is idempotent: the same id gets the same MAC, and every VM
	// of a pod the pod's address, also from another process or after a
	// restart.
	Attach(ctx context.Context, id string, opts AttachOptions) (*Endpoint, error)
	// Detach unplugs VM id. Detaching an unknown id is not an error. The
	// pod keeps its address until ReleasePod.
	Detach(ctx context.Context, id string) error
	// ReleasePod frees a pod's address once none of its VMs is left.
	ReleasePod(ctx context.Context, pod string) error
	// Check reports whether the network is in working order; the node's
	// health (Ping) and `doctor` call it.
	Check(ctx context.Context) error
	// Close releases this process's resources; the network stays.
	Close(ctx context.Context) error
	// Teardown removes the network and every endpoint, then closes.
	Teardown(ctx context.Context) error
}

// AttachOptions place a VM in its pod.
type AttachOptions struct {
	// Pod names the group of VMs that share one address (a Kubernetes pod;
	// a CLI container is a pod of its own: empty means the VM's id). It
	// must be a valid id.
	Pod string `json:"pod,omitempty"`
	// Slot numbers the VM among the pod's Slots VMs (its containers, init
	// containers included): each gets its own share of the ephemeral port
	// range.
	Slot  int `json:"slot,omitempty"`
	Slots int `json:"slots,omitempty"`
	// Ports are the container's declared ports.
	Ports []Port `json:"ports,omitempty"`
}

// Publisher publishes a pod's ports on the host (`run -p`, hostPort).
type Publisher interface {
	// Publish replaces the ports owner publishes for the pod at podIP;
	// nil withdraws them. A port another owner holds is refused.
	Publish(ctx context.Context, owner string, podIP netip.Addr, ports []PublishedPort) error
}

// PublishedPort is a pod's port reached at a host address.
type PublishedPort struct {
	HostIP   netip.Addr `json:"hostIP"`
	HostPort uint16     `json:"hostPort"`
	Protocol string     `json:"protocol"` // TCP or UDP
	Port     uint16     `json:"port"`
}

// Port is one port a container serves.
type Port struct {
	Protocol string `json:"protocol"` // TCP or UDP
	Port     uint16 `json:"port"`
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
	// IP is the VM's address: its pod's.
	IP netip.Addr `json:"ip,omitzero"`
}

// GuestConfig is the guest side of an endpoint as plain data.
type GuestConfig struct {
	// MAC selects the guest's device; it equals NIC.MAC.
	MAC string `json:"mac"`
	// Address is the interface address in CIDR form (10.213.0.5/32).
	Address netip.Prefix `json:"address,omitzero"`
	// Gateway is the default route's next hop.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// MTU of the guest interface.
	MTU int `json:"mtu"`
	// DNS lists the default nameservers (the gateway's cluster DNS).
	DNS []netip.Addr `json:"dns,omitempty"`
	// PortRange is the guest's net.ipv4.ip_local_port_range ("first
	// last"); empty keeps the kernel's.
	PortRange string `json:"portRange,omitempty"`
	// OnLinkGateway: the address is a /32 and the gateway is reached
	// through a link route (as Calico and Cilium configure pods).
	OnLinkGateway bool `json:"onLinkGateway,omitempty"`
}

var (
	// ErrInvalidID is returned for a VM id that is not a valid vm.Spec ID.
	ErrInvalidID = errors.New("invalid VM id")
	// ErrExhausted is returned when the subnet has no free address.
	ErrExhausted = errors.New("no free address in subnet")
	// ErrClosed is returned by a Network after Close or Teardown.
	ErrClosed = errors.New("network closed")
)
