package vswitch

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// dnsTTL is the TTL of cluster answers: CoreDNS's kubernetes plugin
// default.
const dnsTTL = 5

// clusterDNS answers the cluster's names from the node's Service table (the
// Kubernetes DNS specification: A and SRV records of Services, headless
// endpoints, pod records, PTR) and forwards every other name to the host's
// resolvers, so pods resolve what the node resolves.
type clusterDNS struct {
	table     *atomic.Pointer[serviceIndex]
	upstreams []string // host:port
	log       *slog.Logger
	client    *dns.Client
}

func newClusterDNS(table *atomic.Pointer[serviceIndex], upstreams []string, log *slog.Logger) *clusterDNS {
	return &clusterDNS{table: table, upstreams: upstreams, log: log, client: &dns.Client{Timeout: 2 * time.Second}}
}

// ServeDNS implements dns.Handler.
func (d *clusterDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := d.answer(req, w.RemoteAddr())
	if resp == nil {
		return
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		resp.Truncate(udpSize(req))
	}
	_ = w.WriteMsg(resp)
}

func udpSize(req *dns.Msg) int {
	if o := req.IsEdns0(); o != nil {
		return int(o.UDPSize())
	}
	return dns.MinMsgSize
}

// answer returns the response to req (nil to drop it).
func (d *clusterDNS) answer(req *dns.Msg, from net.Addr) *dns.Msg {
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	x := d.table.Load()
	if x != nil && (name == x.zone || strings.HasSuffix(name, "."+x.zone) || isReverse(name)) {
		if m := x.resolve(req, q, name); m != nil {
			return m
		}
	}
	return d.forward(req)
}

func isReverse(name string) bool { return strings.HasSuffix(name, ".in-addr.arpa.") }

// forward asks the host's resolvers.
func (d *clusterDNS) forward(req *dns.Msg) *dns.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	for _, up := range d.upstreams {
		resp, _, err := d.client.ExchangeContext(ctx, req, up)
		if err == nil {
			return resp
		}
		d.log.Debug("upstream resolver failed", "upstream", up, "err", err)
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}

// resolve answers a name in the cluster zone (or a reverse name it knows;
// nil sends other reverse names upstream).
func (x *serviceIndex) resolve(req *dns.Msg, q dns.Question, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if isReverse(name) {
		ip, ok := reverseAddr(name)
		fqdn := x.reverse[ip]
		if !ok || fqdn == "" {
			return nil
		}
		if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: fqdn})
		}
		return m
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(name, x.zone))
	rrs, found := x.records(q, labels)
	if !found {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{x.soa()}
		return m
	}
	m.Answer = rrs
	if len(rrs) == 0 {
		m.Ns = []dns.RR{x.soa()}
	}
	return m
}

// records returns the answers for labels (the name without the zone) and
// whether the name exists.
func (x *serviceIndex) records(q dns.Question, labels []string) ([]dns.RR, bool) {
	want := func(t uint16) bool { return q.Qtype == t || q.Qtype == dns.TypeANY }
	var out []dns.RR
	a := func(ip netip.Addr) {
		if ip.Is4() && want(dns.TypeA) {
			out = append(out, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: ip.AsSlice()})
		}
		if ip.Is6() && want(dns.TypeAAAA) {
			out = append(out, &dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
	n := len(labels)
	switch {
	case n == 3 && labels[2] == "pod":
		// <a-b-c-d>.<ns>.pod.<zone>
		ip, ok := x.podIPs[labels[0]+"."+labels[1]]
		if !ok {
			return nil, false
		}
		a(ip)
		return out, true
	case n >= 3 && labels[n-1] == "svc":
		s := x.byName[labels[n-3]+"."+labels[n-2]]
		if s == nil {
			return nil, false
		}
		svcName := labels[n-3] + "." + labels[n-2] + ".svc." + x.zone
		switch n {
		case 3: // <svc>.<ns>.svc
			if s.ExternalName != "" {
				return []dns.RR{&dns.CNAME{Hdr: hdr(q.Name, dns.TypeCNAME), Target: dns.Fqdn(s.ExternalName)}}, true
			}
			if len(s.ClusterIPs) > 0 {
				for _, ip := range s.ClusterIPs {
					a(ip)
				}
			} else {
				for _, e := range s.Endpoints {
					a(e.IP)
				}
			}
			if want(dns.TypeSRV) {
				out = append(out, x.srv(q, s, svcName, "", "")...)
			}
			return out, true
		case 4: // <hostname or a-b-c-d>.<svc>.<ns>.svc (headless)
			found := false
			for _, e := range s.Endpoints {
				if len(s.ClusterIPs) == 0 && (strings.EqualFold(e.Hostname, labels[0]) || dashed(e.IP) == labels[0]) {
					a(e.IP)
					found = true
				}
			}
			return out, found
		case 5: // _<port>._<proto>.<svc>.<ns>.svc
			if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
				return nil, false
			}
			rrs := x.srv(q, s, svcName, labels[0][1:], labels[1][1:])
			return rrs, len(rrs) > 0
		}
	}
	return nil, false
}

// srv returns the SRV records of s's named ports (all of them when port
// and proto are empty), as the DNS specification gives them.
func (x *serviceIndex) srv(q dns.Question, s *Service, svcName, port, proto string) []dns.RR {
	var out []dns.RR
	if q.Qtype != dns.TypeSRV && q.Qtype != dns.TypeANY {
		return nil
	}
	for _, p := range s.Ports {
		if p.Name == "" || (port != "" && !strings.EqualFold(p.Name, port)) || (proto != "" && !strings.EqualFold(p.Protocol, proto)) {
			continue
		}
		if len(s.ClusterIPs) > 0 {
			out = append(out, &dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: p.Port, Target: svcName})
			continue
		}
		for _, e := range s.Endpoints {
			for _, ep := range e.Ports {
				if ep.Name != p.Name {
					continue
				}
				label := dashed(e.IP)
				if e.Hostname != "" {
					label = strings.ToLower(e.Hostname)
				}
				out = append(out, &dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: ep.Port, Target: label + "." + svcName})
			}
		}
	}
	return out
}

func (x *serviceIndex) soa() dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: x.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: dnsTTL},
		Ns:  "ns.dns." + x.zone, Mbox: "hostmaster." + x.zone,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: dnsTTL,
	}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: dnsTTL}
}

// reverseAddr parses d.c.b.a.in-addr.arpa.
func reverseAddr(name string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[3-i] = byte(v)
	}
	return netip.AddrFrom4(b), true
}

// hostResolvers reads the nameservers of a resolv.conf, as host:port.
func hostResolvers(path string) []string {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	return out
}
