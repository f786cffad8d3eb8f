package vznat

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
)

func TestAttachGivesNATWithDHCP(t *testing.T) {
	ctx := context.Background()
	dns := []netip.Addr{netip.MustParseAddr("192.168.64.1")}
	n := New(Config{DNS: dns})
	ep, err := n.Attach(ctx, "0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	mac := network.MACFor("0123456789ab").String()
	want := &network.Endpoint{
		ID:    "0123456789ab",
		NIC:   vm.NIC{MAC: mac, Attachment: vm.Attachment{Kind: vm.AttachNAT}},
		Guest: network.GuestConfig{MAC: mac, MTU: network.DefaultMTU, DNS: dns, DHCP: true},
	}
	if !reflect.DeepEqual(ep, want) {
		t.Fatalf("Attach = %+v\nwant     %+v", ep, want)
	}
	again, err := n.Attach(ctx, "0123456789ab")
	if err != nil || !reflect.DeepEqual(again, ep) {
		t.Errorf("second Attach = %+v, %v; want the same endpoint", again, err)
	}
	other, _ := n.Attach(ctx, "ba9876543210")
	if other.NIC.MAC == ep.NIC.MAC {
		t.Errorf("two ids share MAC %s", ep.NIC.MAC)
	}
	// The NIC must pass the VM spec's own validation.
	spec := vm.Spec{ID: "0123456789ab", Arch: "arm64", Kernel: "k", Initrd: "i", CPUs: 1, MemoryMiB: 256,
		ConsoleLog: "c", NICs: []vm.NIC{ep.NIC}}
	if err := spec.Validate(); err != nil {
		t.Errorf("spec with the NAT NIC: %v", err)
	}
}

func TestRejectsBadIDsAndUseAfterClose(t *testing.T) {
	ctx := context.Background()
	n := New(Config{})
	if _, err := n.Attach(ctx, "Bad/ID"); !errors.Is(err, network.ErrInvalidID) {
		t.Errorf("Attach(bad id) = %v, want ErrInvalidID", err)
	}
	if err := n.Check(ctx); err != nil {
		t.Errorf("Check = %v", err)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(ctx, "abc"); !errors.Is(err, network.ErrClosed) {
		t.Errorf("Attach after Teardown = %v, want ErrClosed", err)
	}
	if err := n.Check(ctx); !errors.Is(err, network.ErrClosed) {
		t.Errorf("Check after Teardown = %v, want ErrClosed", err)
	}
}
