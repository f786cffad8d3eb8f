package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
)

// VMs resumed from a template (--vm-templates) are on the pod network as
// booted ones are: each with its own address and MAC, which the switch
// delivers to. The first run builds the template of the default shape,
// the second resumes it.
func TestRunFromVMTemplates(t *testing.T) {
	name := uniqueName("tplweb")
	r := vkav(t, "", "--vm-templates", "run", "-d", "--name", name, env.busybox,
		"sh", "-c", "echo served-by-a-resumed-vm > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
	if r.code != 0 {
		t.Fatalf("run -d: %d %s", r.code, r.stderr)
	}
	t.Cleanup(func() { vkav(t, "", "rm", "-f", name) })
	ip := vmAddress(t, name)
	url := "http://" + net.JoinHostPort(ip, "8080") + "/index.html"
	// httpd may still be starting when run -d returns.
	fetch := "for i in $(seq 100); do wget -q -O- " + url + " && break; sleep 0.2; done; cat /proc/cmdline"
	r = vkav(t, "", "--vm-templates", "run", "--rm", env.busybox, "sh", "-c", fetch)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "served-by-a-resumed-vm\n") {
		t.Fatalf("VM → VM at %s: code %d stdout %q stderr %q", ip, r.code, r.stdout, r.stderr)
	}
	// Both guests are the template's: its command line is in their memory.
	if !strings.Contains(r.stdout, vmtemplate.TemplateCmdline) {
		t.Errorf("the client VM booted instead of resuming: /proc/cmdline %q", r.stdout)
	}
	if r := vkav(t, "", "exec", name, "cat", "/proc/cmdline"); r.code != 0 || !strings.Contains(r.stdout, vmtemplate.TemplateCmdline) {
		t.Errorf("the server VM booted instead of resuming: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
