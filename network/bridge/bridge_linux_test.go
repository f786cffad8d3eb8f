package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/vm"
)

func TestSetupReachesGateway(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 1)
	before, err := IPForward(cfg.NodeNetns)
	if err != nil {
		t.Fatal(err)
	}
	n := newNetwork(t, cfg)
	ctx := testContext(t)

	if ok, err := netns.IsNamespace(n.Namespace()); err != nil || !ok {
		t.Fatalf("backend namespace %s missing: %v", n.Namespace(), err)
	}
	if !strings.HasPrefix(filepath.Base(n.Namespace()), "vkav-") || len(filepath.Base(n.Namespace())) != len("vkav-")+8 {
		t.Errorf("backend namespace %s: want vkav-<8 hex>", n.Namespace())
	}
	br := linkIn(t, n.Namespace(), n.Bridge())
	if br.Type() != "bridge" || !isUp(br) {
		t.Errorf("%s: type %s, up %v; want an up bridge", n.Bridge(), br.Type(), isUp(br))
	}
	addrs, err := handleIn(t, n.Namespace()).AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.1.1/24" {
		t.Errorf("bridge addresses %v (%v); want only the gateway 10.99.1.1/24", addrs, err)
	}
	if veth := linkIn(t, cfg.NodeNetns, n.NodeVeth()); veth.Type() != "veth" || !isUp(veth) {
		t.Errorf("node veth %s: type %s, up %v", n.NodeVeth(), veth.Type(), isUp(veth))
	}
	if err := pingFrom(cfg.NodeNetns, netip.MustParseAddr("10.99.1.1"), 5*time.Second); err != nil {
		t.Errorf("node namespace cannot reach the gateway: %v", err)
	}
	if on, err := IPForward(n.Namespace()); err != nil || !on {
		t.Errorf("ip_forward in the backend namespace: %v, %v; want on", on, err)
	}
	// Forwarding in the node's namespace changes the host: only on request.
	if after, err := IPForward(cfg.NodeNetns); err != nil || after != before {
		t.Errorf("ip_forward in the node namespace went from %v to %v (%v) without EnableIPForward", before, after, err)
	}
	if !nftTableExists(t, cfg.NodeNetns, n.NATTable()) {
		t.Errorf("NAT table %s missing in the node namespace", n.NATTable())
	}
	if err := n.Check(ctx); err != nil {
		t.Errorf("Check on a fresh network: %v", err)
	}
}

func TestAttachCreatesBridgedTaps(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 2)
	n := newNetwork(t, cfg)
	ctx := testContext(t)

	a, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Attach(ctx, "bbbbbbbbbbbb", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.IP == b.IP || a.NIC.MAC == b.NIC.MAC || a.NIC.Attachment.Tap == b.NIC.Attachment.Tap {
		t.Fatalf("endpoints share IP, MAC or tap: %+v / %+v", a, b)
	}
	want := &network.Endpoint{
		ID: "aaaaaaaaaaaa",
		NIC: vm.NIC{MAC: network.MACFor("aaaaaaaaaaaa").String(), Attachment: vm.Attachment{
			Kind: vm.AttachTap, Tap: "vktaaaaaaaaaaaa", Netns: n.Namespace(),
		}},
		Guest: network.GuestConfig{
			MAC: network.MACFor("aaaaaaaaaaaa").String(), Address: netip.PrefixFrom(a.IP, 24),
			Gateway: netip.MustParseAddr("10.99.2.1"), MTU: 1500, DNS: cfg.DNS,
		},
		IP: a.IP,
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("endpoint\n got %+v\nwant %+v", a, want)
	}
	if !cfg.Subnet.Contains(a.IP) || a.IP == want.Guest.Gateway {
		t.Errorf("IP %v: want a host address of %v other than the gateway", a.IP, cfg.Subnet)
	}
	br := linkIn(t, n.Namespace(), n.Bridge())
	for _, ep := range []*network.Endpoint{a, b} {
		link := linkIn(t, n.Namespace(), ep.NIC.Attachment.Tap)
		tt, ok := link.(*netlink.Tuntap)
		if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
			t.Errorf("%s is %T %+v, want a tap device", ep.NIC.Attachment.Tap, link, link)
		}
		if link.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s is not a port of %s", ep.NIC.Attachment.Tap, n.Bridge())
		}
		if !isUp(link) {
			t.Errorf("%s is down", ep.NIC.Attachment.Tap)
		}
		if linkExists(t, cfg.NodeNetns, ep.NIC.Attachment.Tap) {
			t.Errorf("%s leaked into the node namespace", ep.NIC.Attachment.Tap)
		}
	}
	again, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil || !reflect.DeepEqual(again, a) {
		t.Errorf("second Attach = %+v, %v; want %+v", again, err, a)
	}
	spec := vm.Spec{ID: "aaaaaaaaaaaa", Arch: "amd64", Kernel: "k", Initrd: "i", CPUs: 1, MemoryMiB: 256,
		ConsoleLog: "c", NICs: []vm.NIC{a.NIC, b.NIC}}
	if err := spec.Validate(); err != nil {
		t.Errorf("VM spec with the endpoints' NICs: %v", err)
	}
	if _, err := n.Attach(ctx, "../etc", network.AttachOptions{}); !errors.Is(err, network.ErrInvalidID) {
		t.Errorf("Attach(../etc) = %v, want ErrInvalidID", err)
	}
}

func TestRestartReattaches(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 3)
	first := newNetwork(t, cfg)
	ctx := testContext(t)
	a, err := first.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	guest := startGuest(t, a) // a running VM holds its tap across the restart
	brIndex := linkIn(t, first.Namespace(), first.Bridge()).Attrs().Index
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Attach(ctx, "cccccccccccc", network.AttachOptions{}); !errors.Is(err, network.ErrClosed) {
		t.Errorf("Attach after Close = %v, want ErrClosed", err)
	}
	if ok, _ := netns.IsNamespace(first.Namespace()); !ok {
		t.Fatal("Close removed the backend namespace; VMs outlive the node")
	}
	if err := pingFrom(cfg.NodeNetns, a.IP, 5*time.Second); err != nil {
		t.Errorf("VM unreachable while no node runs: %v", err)
	}

	second := newNetwork(t, cfg)
	if got := linkIn(t, second.Namespace(), second.Bridge()).Attrs().Index; got != brIndex {
		t.Errorf("bridge ifindex %d after restart, was %d: it was recreated", got, brIndex)
	}
	again, err := second.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil || !reflect.DeepEqual(again, a) {
		t.Errorf("Attach after restart = %+v, %v; want %+v", again, err, a)
	}
	b, err := second.Attach(ctx, "bbbbbbbbbbbb", network.AttachOptions{})
	if err != nil || b.IP == a.IP {
		t.Errorf("new VM after restart got %v (%v), must differ from %v", b, err, a.IP)
	}
	if err := second.Check(ctx); err != nil {
		t.Errorf("Check after restart: %v", err)
	}
	if err := guest.ping(second.cfg.Subnet.Addr().Next(), 5*time.Second); err != nil {
		t.Errorf("VM cannot reach its gateway after the restart: %v", err)
	}
}

func TestDetachFrees(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 4)
	cfg.Subnet = netip.MustParsePrefix("10.99.4.0/29") // 5 VM addresses
	n := newNetwork(t, cfg)
	ctx := testContext(t)
	for i := range 5 {
		if _, err := n.Attach(ctx, fmt.Sprintf("vm%d", i), network.AttachOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Attach(ctx, "vm5", network.AttachOptions{}); !errors.Is(err, network.ErrExhausted) {
		t.Fatalf("sixth Attach on a /29 = %v, want ErrExhausted", err)
	}
	if err := n.Detach(ctx, "vm2"); err != nil {
		t.Fatal(err)
	}
	if linkExists(t, n.Namespace(), network.TapName("vm2")) {
		t.Error("Detach left the tap device")
	}
	if err := n.Detach(ctx, "vm2"); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	leases, err := n.Leases(ctx)
	if _, held := leases["vm2"]; err != nil || held || len(leases) != 4 {
		t.Errorf("leases after Detach: %v, %v; want 4 without vm2", leases, err)
	}
	if _, err := n.Attach(ctx, "vm5", network.AttachOptions{}); err != nil {
		t.Errorf("Attach into the freed address: %v", err)
	}
}

func TestTrafficThroughTaps(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 5)
	n := newNetwork(t, cfg)
	ctx := testContext(t)
	a, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Attach(ctx, "bbbbbbbbbbbb", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ga, gb := startGuest(t, a), startGuest(t, b)
	for _, ep := range []*network.Endpoint{a, b} {
		if err := pingFrom(cfg.NodeNetns, ep.IP, 5*time.Second); err != nil {
			t.Errorf("node -> VM %v: %v", ep.IP, err)
		}
	}
	if err := ga.ping(b.IP, 5*time.Second); err != nil {
		t.Errorf("VM -> VM: %v", err)
	}
	if err := gb.ping(a.IP, 5*time.Second); err != nil {
		t.Errorf("VM -> VM: %v", err)
	}
	if err := ga.ping(a.Guest.Gateway, 5*time.Second); err != nil {
		t.Errorf("VM -> gateway: %v", err)
	}
	// The node's own end of the link net is off the VM subnet: this goes
	// through the gateway, the backend's default route and the veth.
	if err := ga.ping(cfg.nodeAddr(), 5*time.Second); err != nil {
		t.Errorf("VM -> node: %v", err)
	}
}

func TestTeardownLeavesNothing(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 8)
	n := newNetwork(t, cfg)
	ctx := testContext(t)
	ep, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	backend := n.Namespace()
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(backend); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backend namespace %s still there (%v)", backend, err)
	}
	if linkExists(t, cfg.NodeNetns, n.NodeVeth()) {
		t.Errorf("veth %s still in the node namespace", n.NodeVeth())
	}
	// Devices of a dying namespace that the kernel cannot delete are moved
	// to the initial namespace; the tap must not turn up there.
	if linkExists(t, netns.Self, ep.NIC.Attachment.Tap) {
		t.Errorf("tap %s turned up in this process's namespace", ep.NIC.Attachment.Tap)
	}
	if nftTableExists(t, cfg.NodeNetns, n.NATTable()) {
		t.Errorf("NAT table %s still in the node namespace", n.NATTable())
	}
	routes, err := handleIn(t, cfg.NodeNetns).RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && p.Overlaps(cfg.Subnet) {
			t.Errorf("route %v still in the node namespace", r)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "network", "leases.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leases survived Teardown (%v)", err)
	}
	if err := Cleanup(ctx, cfg); err != nil {
		t.Errorf("Cleanup of nothing: %v", err)
	}
}

func TestRepairsAndReportsMissingPieces(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 9)
	n := newNetwork(t, cfg)
	ctx := testContext(t)
	node := handleIn(t, cfg.NodeNetns)
	if err := node.LinkDel(linkIn(t, cfg.NodeNetns, n.NodeVeth())); err != nil {
		t.Fatal(err)
	}
	if err := n.Check(ctx); err == nil || !strings.Contains(err.Error(), n.NodeVeth()) {
		t.Errorf("Check with the veth deleted = %v; want an error naming %s", err, n.NodeVeth())
	}
	if err := netns.Remove(n.Namespace()); err != nil {
		t.Fatal(err)
	}
	if err := n.Check(ctx); err == nil {
		t.Error("Check passed with the backend namespace removed")
	}
	n.Close(ctx)
	repaired := newNetwork(t, cfg)
	if err := repaired.Check(ctx); err != nil {
		t.Errorf("Check after New repaired the network: %v", err)
	}
	if err := pingFrom(cfg.NodeNetns, network.Gateway(cfg.Subnet), 5*time.Second); err != nil {
		t.Errorf("gateway after repair: %v", err)
	}
}

func TestRefusesSubnetInUse(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 10)
	other := newNamespace(t, "peer")
	addVethPair(t, cfg.NodeNetns, "vktbusy", "10.99.10.200/24", other, "eth0", "10.99.10.201/24")
	_, err := New(testContext(t), cfg)
	if err == nil {
		Cleanup(context.Background(), cfg)
		t.Fatal("New took a subnet that the node namespace already uses")
	}
	if !strings.Contains(err.Error(), "vktbusy") || !strings.Contains(err.Error(), "10.99.10.0/24") {
		t.Errorf("error %q should name the subnet and the interface using it", err)
	}
	if ok, _ := netns.IsNamespace(netns.Path(mustNames(t, cfg).netns)); ok {
		t.Error("a refused setup left a backend namespace")
	}
}

func mustNames(t *testing.T, cfg Config) names {
	nm, err := namesFor(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	return nm
}

func TestConcurrentAttachAcrossInstances(t *testing.T) {
	requirePrivileges(t)
	cfg := testConfig(t, 11)
	// Two instances on one state root: the node and the CLI.
	nets := []*Network{newNetwork(t, cfg), newNetwork(t, cfg)}
	ctx := testContext(t)
	const workers, perWorker = 6, 4
	eps := make(chan *network.Endpoint, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				ep, err := nets[w%2].Attach(ctx, fmt.Sprintf("w%d-%d", w, i), network.AttachOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				eps <- ep
			}
		})
	}
	wg.Wait()
	close(eps)
	byIP := map[netip.Addr]string{}
	for ep := range eps {
		if other, dup := byIP[ep.IP]; dup {
			t.Errorf("%s and %s both got %v", ep.ID, other, ep.IP)
		}
		byIP[ep.IP] = ep.ID
		if !linkExists(t, nets[0].Namespace(), ep.NIC.Attachment.Tap) {
			t.Errorf("tap %s of %s missing", ep.NIC.Attachment.Tap, ep.ID)
		}
	}
	if len(byIP) != workers*perWorker {
		t.Errorf("%d endpoints, want %d", len(byIP), workers*perWorker)
	}
}
