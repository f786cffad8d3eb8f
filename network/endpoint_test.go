package network

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Endpoints travel in JSON (container state, CLI output): the netip types
// must survive a round trip, and a DHCP endpoint must not carry zero
// addresses.
func TestEndpointJSON(t *testing.T) {
	static := Endpoint{
		ID:  "0123456789ab",
		NIC: vm.NIC{MAC: "02:00:00:00:00:01", Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "vkt0123456789ab", Netns: "/run/netns/vkav-01234567"}},
		Guest: GuestConfig{MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.213.0.5/22"),
			Gateway: netip.MustParseAddr("10.213.0.1"), MTU: 1500, DNS: []netip.Addr{netip.MustParseAddr("10.255.255.53")}},
		IP: netip.MustParseAddr("10.213.0.5"),
	}
	dhcp := Endpoint{ID: "x", NIC: vm.NIC{MAC: "02:00:00:00:00:02", Attachment: vm.Attachment{Kind: vm.AttachNAT}},
		Guest: GuestConfig{MAC: "02:00:00:00:00:02", MTU: 1500, DHCP: true}}
	for _, ep := range []Endpoint{static, dhcp} {
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
	}
	data, _ := json.Marshal(dhcp)
	want := `{"id":"x","nic":{"mac":"02:00:00:00:00:02","attachment":{"kind":"nat"}},"guest":{"mac":"02:00:00:00:00:02","mtu":1500,"dhcp":true}}`
	if string(data) != want {
		t.Errorf("DHCP endpoint JSON\n got %s\nwant %s", data, want)
	}
	data, _ = json.Marshal(static)
	want = `{"id":"0123456789ab","nic":{"mac":"02:00:00:00:00:01","attachment":{"kind":"tap","tap":"vkt0123456789ab","netns":"/run/netns/vkav-01234567"}},` +
		`"guest":{"mac":"02:00:00:00:00:01","address":"10.213.0.5/22","gateway":"10.213.0.1","mtu":1500,"dns":["10.255.255.53"]},"ip":"10.213.0.5"}`
	if string(data) != want {
		t.Errorf("static endpoint JSON\n got %s\nwant %s", data, want)
	}
}
