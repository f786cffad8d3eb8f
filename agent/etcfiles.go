package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// renderHosts writes the /etc/hosts containers see: the localhost lines
// the kubelet writes, then the host's entries.
func renderHosts(entries []*api.HostEntry) string {
	var b strings.Builder
	b.WriteString("# Managed by vk-applevm-agent.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, e := range entries {
		if e.GetIp() == "" || len(e.GetNames()) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s\t%s\n", e.GetIp(), strings.Join(e.GetNames(), " "))
	}
	return b.String()
}

// renderResolvConf writes resolv.conf from the host's DNS settings.
func renderResolvConf(dns *api.DNS) string {
	var b strings.Builder
	for _, ns := range dns.GetNameservers() {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
	}
	return b.String()
}

// writeEtcFiles writes the hosts and resolv.conf files containers see, in
// place (not renamed) so containers' bind mounts follow a later Setup.
func writeEtcFiles(dir string, req *api.SetupRequest) error {
	for _, f := range []struct{ name, content string }{
		{"hosts", renderHosts(req.GetHosts())},
		{"resolv.conf", renderResolvConf(req.GetDns())},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}
