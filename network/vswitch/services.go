package vswitch

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// ServiceTable is what the node knows of the cluster's Services and their
// ready endpoints, pushed whole whenever it changes. The switch answers
// cluster DNS and forwards connections to Service addresses from it, as
// kube-proxy and CoreDNS do on other nodes.
type ServiceTable struct {
	// ClusterDomain is the DNS zone of Services ("cluster.local").
	ClusterDomain string    `json:"clusterDomain"`
	Services      []Service `json:"services,omitempty"`
	// Pods are the pods of this node for <a-b-c-d>.<ns>.pod.<zone>.
	Pods []PodRecord `json:"pods,omitempty"`
}

// Service is one Service.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ClusterIPs is empty for a headless Service.
	ClusterIPs []netip.Addr `json:"clusterIPs,omitempty"`
	// ExternalName makes the name a CNAME.
	ExternalName string        `json:"externalName,omitempty"`
	Ports        []ServicePort `json:"ports,omitempty"`
	// Endpoints are the addresses DNS and forwarding use (ready ones, or
	// all with publishNotReadyAddresses).
	Endpoints []ServiceEndpoint `json:"endpoints,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
}

// ServiceEndpoint is one backend of a Service.
type ServiceEndpoint struct {
	IP netip.Addr `json:"ip"`
	// Hostname names the endpoint in DNS (a headless Service's pod with
	// spec.hostname and spec.subdomain).
	Hostname string `json:"hostname,omitempty"`
	// Ports map the Service's port names to this endpoint's target ports
	// (from its EndpointSlice).
	Ports []EndpointPort `json:"ports,omitempty"`
}

// EndpointPort is one named target port of an endpoint.
type EndpointPort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
}

// PodRecord is one pod's address for pod DNS records.
type PodRecord struct {
	Namespace string     `json:"namespace"`
	IP        netip.Addr `json:"ip"`
}

// Validate checks names and protocols so DNS answers are well formed.
func (t *ServiceTable) Validate() error {
	if t.ClusterDomain == "" || strings.HasPrefix(t.ClusterDomain, ".") || strings.HasSuffix(t.ClusterDomain, ".") {
		return fmt.Errorf("service table: cluster domain %q", t.ClusterDomain)
	}
	for _, s := range t.Services {
		if s.Name == "" || s.Namespace == "" || strings.Contains(s.Name+s.Namespace, ".") {
			return fmt.Errorf("service table: service %q in %q: bad name", s.Name, s.Namespace)
		}
		for _, p := range s.Ports {
			if _, err := (Port{Protocol: p.Protocol, Port: p.Port}).key(); err != nil {
				return fmt.Errorf("service %s/%s: %w", s.Namespace, s.Name, err)
			}
		}
	}
	return nil
}

// serviceIndex is a ServiceTable ready for lookups.
type serviceIndex struct {
	table    ServiceTable
	zone     string // "cluster.local."
	byVIP    map[vipKey]*Service
	vips     map[netip.Addr]bool
	byName   map[string]*Service // "<name>.<ns>"
	podIPs   map[string]netip.Addr
	reverse  map[netip.Addr]string // address → FQDN for PTR
	sortedNS []string
}

type vipKey struct {
	ip    netip.Addr
	proto uint8
	port  uint16
}

func newServiceIndex(t ServiceTable) *serviceIndex {
	x := &serviceIndex{
		table: t, zone: strings.ToLower(t.ClusterDomain) + ".",
		byVIP: map[vipKey]*Service{}, vips: map[netip.Addr]bool{}, byName: map[string]*Service{},
		podIPs: map[string]netip.Addr{}, reverse: map[netip.Addr]string{},
	}
	for i := range x.table.Services {
		s := &x.table.Services[i]
		x.byName[strings.ToLower(s.Name+"."+s.Namespace)] = s
		fqdn := strings.ToLower(s.Name + "." + s.Namespace + ".svc." + x.zone)
		for _, ip := range s.ClusterIPs {
			x.vips[ip] = true
			x.reverse[ip] = fqdn
			for _, p := range s.Ports {
				k, _ := (Port{Protocol: p.Protocol, Port: p.Port}).key()
				x.byVIP[vipKey{ip, k.proto, k.port}] = s
			}
		}
		if len(s.ClusterIPs) == 0 {
			for _, e := range s.Endpoints {
				if e.Hostname != "" {
					x.reverse[e.IP] = strings.ToLower(e.Hostname) + "." + fqdn
				}
			}
		}
	}
	for _, p := range t.Pods {
		x.podIPs[strings.ToLower(dashed(p.IP)+"."+p.Namespace)] = p.IP
	}
	return x
}

// dashed writes an IPv4 address as kube-dns pod and endpoint labels do.
func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

// isVIP reports whether ip is a Service address.
func (x *serviceIndex) isVIP(ip netip.Addr) bool { return x != nil && x.vips[ip] }

// backend picks a ready endpoint of the Service at ip:port and returns its
// target address; ok is false when ip:port is no Service's, and the
// address invalid when the Service has no endpoint for the port.
func (x *serviceIndex) backend(ip netip.Addr, proto uint8, port uint16) (target netip.AddrPort, ok bool) {
	if x == nil {
		return netip.AddrPort{}, false
	}
	s := x.byVIP[vipKey{ip, proto, port}]
	if s == nil {
		return netip.AddrPort{}, false
	}
	var sp ServicePort
	for _, p := range s.Ports {
		if k, _ := (Port{Protocol: p.Protocol, Port: p.Port}).key(); k == (portKey{proto, port}) {
			sp = p
		}
	}
	var candidates []netip.AddrPort
	for _, e := range s.Endpoints {
		for _, ep := range e.Ports {
			k, err := (Port{Protocol: ep.Protocol, Port: ep.Port}).key()
			if err == nil && k.proto == proto && ep.Name == sp.Name {
				candidates = append(candidates, netip.AddrPortFrom(e.IP, ep.Port))
			}
		}
	}
	if len(candidates) == 0 {
		return netip.AddrPort{}, true
	}
	// kube-proxy's default (iptables mode) picks uniformly at random.
	return candidates[rand.IntN(len(candidates))], true
}
