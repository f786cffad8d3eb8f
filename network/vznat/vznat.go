// Package vznat is the Network for the vz backend on macOS: every VM's NIC
// uses Virtualization.framework's NAT attachment (VZNATNetworkDeviceAttachment)
// and the guest configures itself by DHCP from macOS's bootpd, which hands
// out 192.168.64.0/24 (the vmnet shared-mode default) and serves DNS on the
// gateway.
//
// Nothing is created on the host, so Attach is pure: the endpoint follows
// from the VM id alone. Its MAC is derived from the id, and bootpd keys its
// leases (/var/db/dhcpd_leases) by MAC, so the same id gets the same address
// again for as long as the lease lives; the host learns it from the agent's
// Setup response. vmnet isolates NAT clients from each other (lima PR #1207):
// VMs do not reach each other here; a user-space switch (vm.AttachSocket) is
// the later answer.
//
// The package holds plain Go with no cgo and no vz import, so its logic is
// tested on Linux; network/platform selects it on darwin only.
package vznat

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Config describes the NAT network.
type Config struct {
	// MTU of the guest interface. Default network.DefaultMTU (vz's NAT
	// attachment does not change it).
	MTU int
	// DNS overrides the nameservers DHCP gives the guest; empty keeps
	// DHCP's.
	DNS []netip.Addr
}

// Network hands out NAT endpoints.
type Network struct {
	cfg Config

	mu     sync.Mutex
	closed bool
}

var _ network.Network = (*Network)(nil)

// New returns the NAT network.
func New(cfg Config) *Network {
	if cfg.MTU == 0 {
		cfg.MTU = network.DefaultMTU
	}
	return &Network{cfg: cfg}
}

func (n *Network) usable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return network.ErrClosed
	}
	return nil
}

// Attach returns VM id's endpoint: NAT attachment, DHCP in the guest. The
// IP is unknown until the guest reports it.
func (n *Network) Attach(_ context.Context, id string) (*network.Endpoint, error) {
	if err := network.ValidateID(id); err != nil {
		return nil, err
	}
	if err := n.usable(); err != nil {
		return nil, err
	}
	mac := network.MACFor(id).String()
	return &network.Endpoint{
		ID:  id,
		NIC: vm.NIC{MAC: mac, Attachment: vm.Attachment{Kind: vm.AttachNAT}},
		Guest: network.GuestConfig{
			MAC:  mac,
			MTU:  n.cfg.MTU,
			DNS:  slices.Clone(n.cfg.DNS),
			DHCP: true,
		},
	}, nil
}

// Detach has nothing to remove: the NAT attachment goes with the VM.
func (n *Network) Detach(_ context.Context, id string) error {
	if err := network.ValidateID(id); err != nil {
		return err
	}
	return n.usable()
}

// Check has nothing to verify on the host: whether vz can attach NAT is
// the vz driver's Check (macOS version, entitlement).
func (n *Network) Check(context.Context) error { return n.usable() }

// Close marks the network closed.
func (n *Network) Close(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return nil
}

// Teardown closes; there is nothing on the host to remove.
func (n *Network) Teardown(ctx context.Context) error { return n.Close(ctx) }
