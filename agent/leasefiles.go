package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/dhcp"
)

// guestFiles renders the /etc/hosts and resolv.conf containers see from
// one Setup request and the DHCP leases of its interfaces, and rewrites
// them when a renewal changes what they say.
type guestFiles struct {
	dir      string // the agent's etc directory
	hostname string
	hosts    []*api.HostEntry
	dns      *api.DNS

	mu      sync.Mutex
	macs    []string               // DHCP interfaces, in the order leased
	leases  map[string]*dhcp.Lease // by MAC
	written [2]string              // hosts, resolv.conf as last written
}

func newGuestFiles(dir, hostname string, req *api.SetupRequest) *guestFiles {
	return &guestFiles{dir: dir, hostname: hostname, hosts: req.GetHosts(), dns: req.GetDns(), leases: map[string]*dhcp.Lease{}}
}

// setLease records the lease of the interface with MAC mac; Setup's
// retries may lease one interface twice.
func (f *guestFiles) setLease(mac string, l *dhcp.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLeaseLocked(mac, l)
}

func (f *guestFiles) setLeaseLocked(mac string, l *dhcp.Lease) {
	if _, ok := f.leases[mac]; !ok {
		f.macs = append(f.macs, mac)
	}
	f.leases[mac] = l
}

// render returns the hosts and resolv.conf contents. A leased address
// maps the hostname, as the host does for a static one; the leases' name
// servers and domains apply unless the host sent name servers.
func (f *guestFiles) render() (hosts, resolv string) {
	var entries []*api.HostEntry
	var servers, searches []string
	for _, mac := range f.macs {
		l := f.leases[mac]
		if f.hostname != "" {
			entries = append(entries, &api.HostEntry{Ip: l.Address.Addr().String(), Names: []string{f.hostname}})
		}
		for _, a := range l.DNS {
			if s := a.String(); !slices.Contains(servers, s) {
				servers = append(servers, s)
			}
		}
		if l.Domain != "" && !slices.Contains(searches, l.Domain) {
			searches = append(searches, l.Domain)
		}
	}
	entries = append(entries, f.hosts...)
	dns := f.dns
	if len(dns.GetNameservers()) == 0 && len(servers) > 0 {
		if len(dns.GetSearches()) > 0 {
			searches = dns.GetSearches()
		}
		dns = &api.DNS{Nameservers: servers, Searches: searches, Options: dns.GetOptions()}
	}
	return renderHosts(entries), renderResolvConf(dns)
}

// write writes both files.
func (f *guestFiles) write() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeLocked(true)
}

// update replaces the lease of mac and rewrites the files if they change.
func (f *guestFiles) update(mac string, l *dhcp.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLeaseLocked(mac, l)
	return f.writeLocked(false)
}

func (f *guestFiles) writeLocked(always bool) error {
	hosts, resolv := f.render()
	for i, file := range []struct{ name, content string }{{"hosts", hosts}, {"resolv.conf", resolv}} {
		if !always && f.written[i] == file.content {
			continue
		}
		// Written in place (not renamed) so containers' bind mounts follow.
		if err := os.WriteFile(filepath.Join(f.dir, file.name), []byte(file.content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", file.name, err)
		}
		f.written[i] = file.content
	}
	return nil
}
