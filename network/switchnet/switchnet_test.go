package switchnet

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
)

func shortRoot(t *testing.T) string {
	dir, err := os.MkdirTemp("", "swn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// openNetwork opens a network with its own switch on a fresh state
// directory, torn down with the test.
func openNetwork(t *testing.T) (context.Context, *Network) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	n, err := Open(ctx, Config{StateDir: shortRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Teardown(ctx) })
	return ctx, n
}

func TestPodsShareAnAddressAndReleaseIt(t *testing.T) {
	ctx, n := openNetwork(t)
	a, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{Pod: "pod1", Slot: 0, Slots: 2, Ports: []network.Port{{Protocol: "TCP", Port: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Attach(ctx, "bbbbbbbbbbbb", network.AttachOptions{Pod: "pod1", Slot: 1, Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Attach(ctx, "cccccccccccc", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.IP != b.IP || a.IP == c.IP || a.NIC.MAC == b.NIC.MAC {
		t.Fatalf("pod1's VMs: %v %v (MACs %s %s), a pod of its own: %v", a.IP, b.IP, a.NIC.MAC, b.NIC.MAC, c.IP)
	}
	if a.NIC.Attachment.Kind != vm.AttachSwitch || a.NIC.Attachment.Socket != n.Switch().PortsSocket() {
		t.Errorf("NIC %+v: want the switch's ports socket", a.NIC)
	}
	if a.Guest.Address.Bits() != 32 || !a.Guest.OnLinkGateway || a.Guest.Gateway != n.Gateway() || a.Guest.PortRange == b.Guest.PortRange {
		t.Errorf("guest configs %+v / %+v", a.Guest, b.Guest)
	}
	// Attach is idempotent.
	again, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{Pod: "pod1", Slot: 0, Slots: 2})
	if err != nil || again.IP != a.IP || again.NIC.MAC != a.NIC.MAC {
		t.Fatalf("attach again: %+v %v", again, err)
	}
	if err := n.ReleasePod(ctx, "pod1"); err == nil {
		t.Fatal("released a pod address its VMs still use")
	}
	for _, id := range []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"} {
		if err := n.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.ReleasePod(ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	d, err := n.Attach(ctx, "dddddddddddd", network.AttachOptions{Pod: "pod2"})
	if err != nil {
		t.Fatal(err)
	}
	if d.IP == c.IP {
		t.Errorf("pod2 got pod c's address %v", d.IP)
	}
	if err := n.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRestartsADeadSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := shortRoot(t)
	n, err := Open(ctx, Config{StateDir: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Teardown(ctx)
	if _, err := n.Attach(ctx, "aaaaaaaaaaaa", network.AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	// Kill the switch (it runs in this process here).
	n.inProc.cancel()
	<-n.inProc.done
	if _, err := n.Switch().Status(ctx); err == nil {
		t.Fatal("the switch still answers")
	}
	if err := n.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	st, err := n.Switch().Status(ctx)
	if err != nil || len(st.Endpoints) != 1 || st.Endpoints[0].ID != "aaaaaaaaaaaa" {
		t.Fatalf("after the restart: %+v %v (the endpoints must survive)", st, err)
	}
}

// The node's host-loopback flag is a security setting: a node must not
// silently take a running switch with the other policy; the CLI takes the
// running one as it is.
func TestHostLoopbackPolicyOfARunningSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := shortRoot(t)
	open, err := Open(ctx, Config{StateDir: root, AllowHostLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Teardown(ctx)
	if _, err := Open(ctx, Config{StateDir: root, EnforceHostLoopback: true}); err == nil || !strings.Contains(err.Error(), "allowHostLoopback=true, not false") {
		t.Fatalf("a node without the flag took a switch that lets pods reach the host's loopback: %v", err)
	}
	same, err := Open(ctx, Config{StateDir: root, AllowHostLoopback: true, EnforceHostLoopback: true})
	if err != nil {
		t.Fatalf("the same policy: %v", err)
	}
	defer same.Close(ctx)
	cli, err := Open(ctx, Config{StateDir: root})
	if err != nil {
		t.Fatalf("the CLI: %v", err)
	}
	defer cli.Close(ctx)
	if st, err := cli.Switch().Status(ctx); err != nil || !st.AllowHostLoopback {
		t.Fatalf("status: %+v %v", st, err)
	}
}

// A switch that does not answer within the check's time is slow, not dead:
// Check says so and starts no other switch.
func TestCheckTakesNoAnswerInTimeForSlowNotDead(t *testing.T) {
	ctx, n := openNetwork(t)
	running := n.inProc
	expired, cancelExpired := context.WithCancel(ctx)
	cancelExpired()
	err := n.Check(expired)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("Check without time to answer: %v", err)
	}
	if n.inProc != running {
		t.Fatal("Check started another switch")
	}
	if err := n.Check(ctx); err != nil {
		t.Fatalf("Check with time to answer: %v", err)
	}
}
