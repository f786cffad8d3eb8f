package network

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Endpoints travel in JSON (the container record, CLI output): the netip
// types must survive a round trip, and the hypervisor's descriptor must
// never be written.
func TestEndpointJSON(t *testing.T) {
	ep := Endpoint{
		ID:  "0123456789ab",
		NIC: vm.NIC{MAC: "02:00:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/var/lib/vk-applevm/network/switch/ports.sock"}},
		Guest: GuestConfig{MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.213.0.5/32"),
			Gateway: netip.MustParseAddr("10.213.0.1"), MTU: 1500, DNS: []netip.Addr{netip.MustParseAddr("10.213.0.1")},
			PortRange: "32768 46883", OnLinkGateway: true},
		IP: netip.MustParseAddr("10.213.0.5"),
	}
	data, err := json.Marshal(ep)
	if err != nil {
		t.Fatal(err)
	}
	var back Endpoint
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ep) {
		t.Errorf("round trip of %s:\n got %+v\nwant %+v", data, back, ep)
	}
	want := `{"id":"0123456789ab","nic":{"mac":"02:00:00:00:00:01","attachment":{"kind":"switch","socket":"/var/lib/vk-applevm/network/switch/ports.sock"}},` +
		`"guest":{"mac":"02:00:00:00:00:01","address":"10.213.0.5/32","gateway":"10.213.0.1","mtu":1500,"dns":["10.213.0.1"],"portRange":"32768 46883","onLinkGateway":true},"ip":"10.213.0.5"}`
	if string(data) != want {
		t.Errorf("endpoint JSON\n got %s\nwant %s", data, want)
	}
}
