package podnet

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestPodKeyIsAValidLeaseID(t *testing.T) {
	k := PodKey("0f8e2b4c-1111-2222-3333-444455556666")
	if err := network.ValidateID(k); err != nil || k == PodKey("other") || k[:len(PodKeyPrefix)] != PodKeyPrefix {
		t.Fatalf("PodKey = %q (%v)", k, err)
	}
}

func TestPlacementCountsEveryContainer(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init"}},
		Containers: []corev1.Container{
			{Name: "side"},
			{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 9, Protocol: corev1.ProtocolSCTP}}},
		},
	}}
	got := Placement(pod, "web")
	want := network.AttachOptions{Pod: PodKey("u"), Slot: 2, Slots: 3, Ports: []network.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if p := Placement(pod, "init"); p.Slot != 0 || p.Slots != 3 {
		t.Errorf("init: %+v", p)
	}
}

func TestServiceTableFromServicesAndSlices(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: corev1.ServiceSpec{
		ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		Ports:      []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP}},
	}}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}}}
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.test"}}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.213.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.213.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	dbSlice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "db-x", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.213.0.7"}, Hostname: ptr.To("db-0")}},
	}
	v6 := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-v6", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv6, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"fd00::5"}}},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Status: corev1.PodStatus{PodIP: "10.213.0.5"}}
	got := ServiceTable("cluster.local", []*corev1.Service{svc, headless, ext}, []*discoveryv1.EndpointSlice{slice, dbSlice, v6}, []*corev1.Pod{pod})
	a := netip.MustParseAddr
	want := vswitch.ServiceTable{
		ClusterDomain: "cluster.local",
		Services: []vswitch.Service{
			{Namespace: "ns", Name: "db", Endpoints: []vswitch.ServiceEndpoint{{IP: a("10.213.0.7"), Hostname: "db-0"}}},
			{Namespace: "ns", Name: "ext", ExternalName: "example.test"},
			{Namespace: "ns", Name: "web", ClusterIPs: []netip.Addr{a("10.96.0.10")}, Ports: []vswitch.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}},
				Endpoints: []vswitch.ServiceEndpoint{{IP: a("10.213.0.5"), Ports: []vswitch.EndpointPort{{Name: "http", Protocol: "TCP", Port: 8080}}}}},
		},
		Pods: []vswitch.PodRecord{{Namespace: "ns", IP: a("10.213.0.5")}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Error(diff)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
}

func podWithHostPort(name, ip string, proto corev1.Protocol, hostIP string, hostPort, port int32) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
		Ports: []corev1.ContainerPort{{HostPort: hostPort, ContainerPort: port, Protocol: proto, HostIP: hostIP}}}}},
		Status: corev1.PodStatus{PodIP: ip}}
}

func TestHostPortsAndConflicts(t *testing.T) {
	a := podWithHostPort("a", "10.213.0.5", "", "", 8080, 80)
	b := podWithHostPort("b", "10.213.0.6", corev1.ProtocolUDP, "", 8080, 53)
	c := podWithHostPort("c", "", corev1.ProtocolTCP, "", 9090, 90) // no address yet
	got := HostPorts([]*corev1.Pod{a, b, c}, netip.MustParseAddr("10.201.0.2"))
	want := []vswitch.HostPort{
		{HostIP: netip.MustParseAddr("10.201.0.2"), HostPort: 8080, Protocol: "TCP", PodIP: netip.MustParseAddr("10.213.0.5"), Port: 80},
		{HostIP: netip.MustParseAddr("10.201.0.2"), HostPort: 8080, Protocol: "UDP", PodIP: netip.MustParseAddr("10.213.0.6"), Port: 53},
	}
	if !slices.Equal(got, want) {
		t.Errorf("HostPorts = %+v", got)
	}
	if p, bad := HostPortConflict(podWithHostPort("d", "", corev1.ProtocolTCP, "", 8080, 1), []*corev1.Pod{a, b}); !bad || p != "TCP/8080" {
		t.Errorf("TCP 8080 twice: %q %v", p, bad)
	}
	if _, bad := HostPortConflict(podWithHostPort("e", "", corev1.ProtocolTCP, "", 8081, 1), []*corev1.Pod{a, b}); bad {
		t.Error("8081 conflicts with nothing")
	}
	if _, bad := HostPortConflict(podWithHostPort("f", "", corev1.ProtocolUDP, "127.0.0.2", 9999, 1), []*corev1.Pod{podWithHostPort("g", "", corev1.ProtocolUDP, "127.0.0.3", 9999, 1)}); bad {
		t.Error("distinct host IPs do not conflict")
	}
}

func TestRelaysAreWhatSiblingsServe(t *testing.T) {
	got := Relays([]VMPorts{
		{ID: "side", Listening: []network.Port{{Protocol: "TCP", Port: 9000}}},
		{ID: "web", Declared: []network.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}, Listening: []network.Port{{Protocol: "TCP", Port: 80}, {Protocol: "TCP", Port: 9000}}},
	})
	want := map[string][]uint16{"side": {80}, "web": nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}
