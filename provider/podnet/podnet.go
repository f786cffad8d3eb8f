// Package podnet is the provider's side of the pod network
// (network/vswitch): what the kubelet's network plugin and kube-proxy do on
// other nodes, computed from the pods and the cluster's Services.
//
//   - PodKey names a pod's network identity (its address lease).
//   - Placement puts a container's VM into its pod: the slot that selects
//     its share of the ephemeral ports, its declared ports.
//   - ServiceTable turns Services and EndpointSlices into the switch's
//     table for cluster DNS and Service addresses.
//   - HostPorts and HostPortConflict publish pods' hostPorts and refuse a
//     pod whose hostPort another pod holds, as the kubelet's admission does.
//   - Relays says which ports each VM must relay to a sibling.
//   - Sync keeps the switch's Service table current from informers.
package podnet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodKeyPrefix starts every pod key, so the node can tell its pods' leases
// from the CLI's containers' (keyed by VM id) when it sweeps.
const PodKeyPrefix = "pod-"

// PodKey is the network identity of the pod with uid: its address lease.
func PodKey(uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	return PodKeyPrefix + hex.EncodeToString(sum[:])[:16]
}

// Placement puts the VM of container name into pod: slots count every
// container (init containers first, as they run), so each VM gets a
// distinct share of the ephemeral port range.
func Placement(pod *corev1.Pod, name string) network.AttachOptions {
	opts := network.AttachOptions{Pod: PodKey(pod.UID), Slots: len(pod.Spec.InitContainers) + len(pod.Spec.Containers)}
	i := 0
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				opts.Slot = i
				for _, p := range c.Ports {
					proto := string(p.Protocol)
					if proto == "" {
						proto = "TCP"
					}
					if proto == "TCP" || proto == "UDP" {
						opts.Ports = append(opts.Ports, network.Port{Protocol: proto, Port: uint16(p.ContainerPort)})
					}
				}
			}
			i++
		}
	}
	return opts
}

// ServiceTable builds the switch's table from the cluster's Services, their
// EndpointSlices and this node's pods.
func ServiceTable(domain string, services []*corev1.Service, slices []*discoveryv1.EndpointSlice, pods []*corev1.Pod) vswitch.ServiceTable {
	t := vswitch.ServiceTable{ClusterDomain: domain}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
	}
	for _, svc := range services {
		out := vswitch.Service{Namespace: svc.Namespace, Name: svc.Name}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			out.ExternalName = svc.Spec.ExternalName
			t.Services = append(t.Services, out)
			continue
		}
		for _, ip := range svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				out.ClusterIPs = append(out.ClusterIPs, a)
			}
		}
		for _, p := range svc.Spec.Ports {
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if proto != "TCP" && proto != "UDP" {
				continue
			}
			out.Ports = append(out.Ports, vswitch.ServicePort{Name: p.Name, Protocol: proto, Port: uint16(p.Port)})
		}
		for _, s := range bySvc[svc.Namespace+"/"+svc.Name] {
			var ports []vswitch.EndpointPort
			for _, p := range s.Ports {
				if p.Port == nil {
					continue
				}
				proto := "TCP"
				if p.Protocol != nil {
					proto = string(*p.Protocol)
				}
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				ports = append(ports, vswitch.EndpointPort{Name: name, Protocol: proto, Port: uint16(*p.Port)})
			}
			for _, e := range s.Endpoints {
				// Ready endpoints only; publishNotReadyAddresses makes the
				// controller mark them ready.
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					ip, err := netip.ParseAddr(a)
					if err != nil || !ip.Is4() {
						continue
					}
					ep := vswitch.ServiceEndpoint{IP: ip, Ports: ports}
					if e.Hostname != nil {
						ep.Hostname = *e.Hostname
					}
					out.Endpoints = append(out.Endpoints, ep)
				}
			}
		}
		t.Services = append(t.Services, out)
	}
	for _, p := range pods {
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && ip.Is4() {
			t.Pods = append(t.Pods, vswitch.PodRecord{Namespace: p.Namespace, IP: ip})
		}
	}
	slicesSortServices(t.Services)
	return t
}

func slicesSortServices(s []vswitch.Service) {
	slices.SortFunc(s, func(a, b vswitch.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}

// hostPortsOf lists a pod's hostPorts with their container ports.
func hostPortsOf(pod *corev1.Pod) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.HostPort != 0 {
					if p.Protocol == "" {
						p.Protocol = corev1.ProtocolTCP
					}
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// HostPorts publishes the hostPorts of pods that have an address on the
// node's address nodeIP (or the port's hostIP when it names one).
func HostPorts(pods []*corev1.Pod, nodeIP netip.Addr) []vswitch.HostPort {
	var out []vswitch.HostPort
	for _, pod := range pods {
		podIP, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			continue
		}
		for _, p := range hostPortsOf(pod) {
			if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
				continue
			}
			host := nodeIP
			if a, err := netip.ParseAddr(p.HostIP); err == nil && !a.IsUnspecified() {
				host = a
			}
			out = append(out, vswitch.HostPort{HostIP: host, HostPort: uint16(p.HostPort), Protocol: string(p.Protocol), PodIP: podIP, Port: uint16(p.ContainerPort)})
		}
	}
	return out
}

// HostPortConflict reports a hostPort of pod that one of others holds, as
// the kubelet's admission (the NodePorts predicate) would.
func HostPortConflict(pod *corev1.Pod, others []*corev1.Pod) (string, bool) {
	type key struct {
		proto string
		port  int32
	}
	held := map[key][]string{} // → host IPs
	for _, o := range others {
		for _, p := range hostPortsOf(o) {
			k := key{string(p.Protocol), p.HostPort}
			held[k] = append(held[k], p.HostIP)
		}
	}
	for _, p := range hostPortsOf(pod) {
		for _, ip := range held[key{string(p.Protocol), p.HostPort}] {
			if ip == p.HostIP || ip == "" || ip == "0.0.0.0" || p.HostIP == "" || p.HostIP == "0.0.0.0" {
				return fmt.Sprintf("%s/%d", p.Protocol, p.HostPort), true
			}
		}
	}
	return "", false
}

// VMPorts is what one VM of a pod serves.
type VMPorts struct {
	ID string
	// Declared and Listening are its containerPorts and the ports its
	// agent found listening.
	Declared, Listening []network.Port
}

// Relays returns, for every VM of a pod, the TCP ports its agent must relay
// to a sibling: what any other VM serves and it does not.
func Relays(vms []VMPorts) map[string][]uint16 {
	serves := func(v VMPorts) map[uint16]bool {
		m := map[uint16]bool{}
		for _, l := range [][]network.Port{v.Declared, v.Listening} {
			for _, p := range l {
				if strings.EqualFold(p.Protocol, "TCP") || p.Protocol == "" {
					m[p.Port] = true
				}
			}
		}
		return m
	}
	out := map[string][]uint16{}
	for i, v := range vms {
		own := serves(v)
		set := map[uint16]bool{}
		for j, o := range vms {
			if j == i {
				continue
			}
			for p := range serves(o) {
				if !own[p] {
					set[p] = true
				}
			}
		}
		var ports []uint16
		for p := range set {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		out[v.ID] = ports
	}
	return out
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
