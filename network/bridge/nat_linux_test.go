package bridge

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
)

func TestOutboundNAT(t *testing.T) {
	for slot, tool := range map[int]string{6: toolNft, 7: toolIptables} {
		t.Run(tool, func(t *testing.T) {
			requirePrivileges(t)
			cfg := testConfig(t, slot)
			cfg.natTool = tool
			cfg.EnableIPForward = true
			// An "outside" host, reachable from the node namespace only:
			// it has no route back to the VM subnet, so its replies reach
			// the VM only if the node masqueraded the request.
			outside := newNamespace(t, "out")
			nodeOut, outAddr := fmt.Sprintf("10.98.%d.1", slot), netip.MustParseAddr(fmt.Sprintf("10.98.%d.2", slot))
			addVethPair(t, cfg.NodeNetns, "vktout", nodeOut+"/24", outside, "eth0", outAddr.String()+"/24")

			n := newNetwork(t, cfg)
			ctx := testContext(t)
			if on, err := IPForward(cfg.NodeNetns); err != nil || !on {
				t.Fatalf("EnableIPForward left ip_forward off in the node namespace (%v)", err)
			}
			ep, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{})
			if err != nil {
				t.Fatal(err)
			}
			guest := startGuest(t, ep)
			if err := guest.ping(outAddr, 5*time.Second); err != nil {
				t.Fatalf("VM -> outside through NAT: %v", err)
			}
			if err := n.Check(ctx); err != nil {
				t.Errorf("Check: %v", err)
			}
			// Without the rules the same ping must fail: the NAT, not some
			// stray route, carried it.
			if err := removeNAT(ctx, cfg.NodeNetns, tool, n.NATTable()); err != nil {
				t.Fatal(err)
			}
			if err := guest.ping(outAddr, 1500*time.Millisecond); err == nil {
				t.Error("VM reached the outside host with the NAT rules removed")
			}
			if err := n.Check(ctx); err == nil {
				t.Error("Check passed with the NAT rules removed")
			}
		})
	}
}
