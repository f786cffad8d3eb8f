package platform

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network/bridge"
	"github.com/vk-applevm/vk-applevm/network/netns"
	"github.com/vk-applevm/vk-applevm/vm"
)

func TestOpenIsTheBridgeNetwork(t *testing.T) {
	testenv.Needs(t, "root (the Linux VM network)")
	if os.Geteuid() != 0 {
		t.Fatal("the Linux network needs root: run go test as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 4)
	rand.Read(b)
	node, err := netns.Create("vkavt-platform-" + hex.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(node) })
	opts := Options{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("10.99.40.0/24"), NodeNetns: node, DNS: []netip.Addr{}}
	n, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Cleanup(context.Background(), bridge.Config{StateDir: opts.StateDir, NodeNetns: node}) })
	if _, ok := n.(*bridge.Network); !ok {
		t.Fatalf("Open returned %T on Linux, want *bridge.Network", n)
	}
	ep, err := n.Attach(ctx, "0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	if ep.NIC.Attachment.Kind != vm.AttachTap || !opts.Subnet.Contains(ep.IP) || len(ep.Guest.DNS) != 0 {
		t.Errorf("endpoint %+v: want a tap in %v with no DNS", ep, opts.Subnet)
	}
	if err := n.Check(ctx); err != nil {
		t.Error(err)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Error(err)
	}
}
