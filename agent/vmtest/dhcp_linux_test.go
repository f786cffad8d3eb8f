package vmtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/vm"
)

// TestDHCPFromTheHypervisorsNAT boots a VM whose NIC uses the backend's
// NAT attachment, as vz NAT endpoints do: under QEMU that is the user-mode
// network, whose built-in DHCP server (libslirp) stands in for macOS's
// bootpd. The guest agent leases its address in Setup and the container
// sees the address, route and name server.
func TestDHCPFromTheHypervisorsNAT(t *testing.T) {
	const mac = "02:00:00:d4:c0:10"
	v := bootVM(t, vmOptions{nics: []vm.NIC{{MAC: mac, Attachment: vm.Attachment{Kind: vm.AttachNAT}}}})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	begin := time.Now()
	resp, err := v.agent.Setup(ctx, &api.SetupRequest{
		Hostname:   "nat-box",
		Interfaces: []*api.Interface{{Mac: mac, Dhcp: true, Name: "eth0"}},
		Dns:        &api.DNS{},
	})
	if err != nil {
		t.Fatalf("setup: %v\nconsole:\n%s", err, v.console(t))
	}
	t.Logf("Setup with a DHCP lease from QEMU's user network took %v (guest under TCG)", time.Since(begin))
	// libslirp's defaults: network 10.0.2.0/24, first lease .15, gateway
	// .2, DNS .3 (QEMU's -netdev user documentation).
	if got := resp.GetAddresses(); len(got) != 1 || got[0] != "10.0.2.15/24" {
		t.Fatalf("addresses %v, want [10.0.2.15/24]", got)
	}
	if line := consoleLine(v.console(t), `msg="dhcp lease"`); line != "" {
		t.Logf("agent: %s", line)
	}
	v.createContainer(t)
	out := v.mustSh(t, "cat /etc/resolv.conf /etc/hosts; ip -4 addr show dev eth0; ip route")
	for _, want := range []string{"nameserver 10.0.2.3", "10.0.2.15\tnat-box", "inet 10.0.2.15/24", "default via 10.0.2.2 dev eth0"} {
		if !strings.Contains(out, want) {
			t.Errorf("container lacks %q:\n%s", want, out)
		}
	}
}

// consoleLine is the first console line containing s.
func consoleLine(console, s string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
