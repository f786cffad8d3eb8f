// Package bridge is the Linux Network: every VM gets a tap device on one
// bridge inside a network namespace of its own (the backend namespace),
// which a veth pair joins to the node's namespace.
//
//	node netns                         backend netns /run/netns/vkav-<h>
//	  vkh<h> 169.254.213.1/30 ──veth──   uplink 169.254.213.2/30
//	  route <subnet> via .2              default via .1, ip_forward=1
//	  nft: masquerade <subnet>           vkbr0 <gateway>/<bits>
//	       leaving by other links          ├── vkt<id> (tap, VM 1)
//	                                       └── vkt<id> (tap, VM 2)
//
// Why a namespace of its own: the node's namespace gains only one veth, one
// route and one NAT table, all named after the state root, so several state
// roots coexist and Cleanup finds everything by name; the VMs' bridge, taps
// and ARP traffic never mix with the host's interfaces. The node reaches
// every VM through the route, VMs reach each other over the bridge, and
// outbound traffic is masqueraded where it leaves the node's namespace.
//
// Everything is made idempotently, so a restarted node re-attaches to the
// namespace its VMs still use. Close keeps the network; Teardown and Cleanup
// remove it. Linux only: on other systems the package holds only its
// configuration.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/network"
)

// Defaults. The VM subnet and link net were chosen to clash with nothing
// common: Docker (172.17.0.0/16 and up), Podman (10.88.0.0/16), kind
// (172.18.0.0/16), k3s (10.42.0.0/16, 10.43.0.0/16), flannel (10.244.0.0/16),
// Calico (192.168.0.0/16), kubeadm services (10.96.0.0/12), MicroK8s
// (10.1.0.0/16), minikube (192.168.49.0/24), libvirt (192.168.122.0/24),
// Lima (192.168.5.0/24) and vz's NAT (192.168.64.0/24). A /22 holds 1021
// VMs, far above what one node's memory can run. The link net is
// link-local (RFC 3927), never routed beyond the veth, away from cloud
// metadata at 169.254.169.254.
var (
	DefaultSubnet  = netip.MustParsePrefix("10.213.0.0/22")
	DefaultLinkNet = netip.MustParsePrefix("169.254.213.0/30")
)

// Config describes one backend network.
type Config struct {
	// StateDir is the node's state root; leases live in StateDir/network
	// and every kernel object's name derives from its absolute path.
	StateDir string
	// Subnet holds the VMs; its first host address is the gateway on the
	// bridge. Default DefaultSubnet.
	Subnet netip.Prefix
	// LinkNet is the /30 on the veth pair: first host address in the
	// node's namespace, second in the backend's. Default DefaultLinkNet.
	LinkNet netip.Prefix
	// MTU of bridge, taps and guests. Default network.DefaultMTU.
	MTU int
	// DNS is handed to guests. Nil means the host's nameservers
	// (network.HostNameservers); an empty, non-nil slice means none.
	DNS []netip.Addr
	// NodeNetns is the path of the node's network namespace, where the
	// veth, the route and the NAT rules go. Empty means this process's.
	NodeNetns string
	// EnableIPForward sets net.ipv4.ip_forward=1 in the node's namespace,
	// without which VMs cannot reach beyond the node. It changes the
	// host's routing behaviour, so it is off unless asked for; Teardown
	// does not turn it back off (something else may rely on it).
	EnableIPForward bool
	// TapOwner is the uid that may attach to the taps without
	// CAP_NET_ADMIN. Zero means this process's effective uid.
	TapOwner int
	// Logger receives setup and attach events. Default slog.Default().
	Logger *slog.Logger

	// natTool forces "nft" or "iptables" (tests of both); empty picks nft
	// when installed.
	natTool string
}

// Names of the kernel objects of one network.
type names struct {
	netns    string // backend namespace name under /run/netns
	nodeVeth string // veth end in the node's namespace
	table    string // nftables table / iptables chain in the node's namespace
}

// Interfaces inside the backend namespace; they are private to it, so
// fixed names are enough.
const (
	bridgeName = "vkbr0"
	uplinkName = "uplink"
)

func namesFor(stateDir string) (names, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return names{}, fmt.Errorf("absolute path of state root %s: %w", stateDir, err)
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	h := hex.EncodeToString(sum[:4])
	return names{
		netns:    "vkav-" + h,
		nodeVeth: "vkh" + h, // 11 characters, within IFNAMSIZ
		table:    "vkav_" + h,
	}, nil
}

// withDefaults fills in defaults and validates.
func (c Config) withDefaults() (Config, error) {
	if c.StateDir == "" {
		return c, fmt.Errorf("bridge network: state directory is empty")
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.LinkNet.IsValid() {
		c.LinkNet = DefaultLinkNet
	}
	if c.MTU == 0 {
		c.MTU = network.DefaultMTU
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := network.ValidateSubnet(c.Subnet); err != nil {
		return c, fmt.Errorf("bridge network: %w", err)
	}
	if !c.LinkNet.Addr().Is4() || c.LinkNet.Bits() != 30 || c.LinkNet.Masked() != c.LinkNet {
		return c, fmt.Errorf("bridge network: link net %v must be a masked IPv4 /30", c.LinkNet)
	}
	if c.Subnet.Overlaps(c.LinkNet) {
		return c, fmt.Errorf("bridge network: link net %v overlaps subnet %v", c.LinkNet, c.Subnet)
	}
	// 68 is IPv4's minimum MTU (RFC 791); 65535 the largest a bridge takes.
	if c.MTU < 68 || c.MTU > 65535 {
		return c, fmt.Errorf("bridge network: MTU %d out of range 68..65535", c.MTU)
	}
	return c, nil
}

// nodeAddr and backendAddr are the two ends of the link net.
func (c Config) nodeAddr() netip.Addr    { return c.LinkNet.Addr().Next() }
func (c Config) backendAddr() netip.Addr { return c.LinkNet.Addr().Next().Next() }
