package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/security"
	"github.com/vk-applevm/vk-applevm/vm"
)

// TestShareBetweenTwoVMsAndTheHost: two VMs mount one host directory
// (virtio-fs, one virtiofsd each); what one writes the other and the host
// read, and the host's writes reach both, including an overwrite of a file
// a guest has read before (cache=none: no stale guest cache).
func TestShareBetweenTwoVMsAndTheHost(t *testing.T) {
	host := t.TempDir()
	shares := []vm.Share{{Tag: "vkav-share0", HostPath: host}}
	mounts := []*api.Mount{{Type: "share", Source: "vkav-share0", Destination: "/data"}}
	vms := bootVMs(t, 2, vmOptions{shares: shares})
	a, b := vms[0], vms[1]
	a.createContainer(t, mounts...)
	b.createContainer(t, mounts...)

	a.mustSh(t, "echo from-a > /data/a.txt")
	if got := readHost(t, host, "a.txt"); got != "from-a\n" {
		t.Fatalf("host reads %q of VM a's file", got)
	}
	if got := b.mustSh(t, "cat /data/a.txt"); got != "from-a\n" {
		t.Fatalf("VM b reads %q of VM a's file", got)
	}

	b.mustSh(t, "mkdir /data/dir && echo from-b > /data/dir/b.txt")
	if got := a.mustSh(t, "cat /data/dir/b.txt"); got != "from-b\n" {
		t.Fatalf("VM a reads %q of VM b's file", got)
	}
	if got := readHost(t, host, "dir/b.txt"); got != "from-b\n" {
		t.Fatalf("host reads %q of VM b's file", got)
	}

	writeHost(t, host, "h.txt", "host-v1\n")
	for i, v := range vms {
		if got := v.mustSh(t, "cat /data/h.txt"); got != "host-v1\n" {
			t.Fatalf("VM %d reads %q of the host's file", i, got)
		}
	}
	// Both guests have read h.txt; a longer overwrite and an append must
	// show at once.
	writeHost(t, host, "h.txt", "host-v2, longer\n")
	a.mustSh(t, "echo appended-by-a >> /data/h.txt")
	for i, v := range vms {
		if got := v.mustSh(t, "cat /data/h.txt; ls /data"); got != "host-v2, longer\nappended-by-a\na.txt\ndir\nh.txt\n" {
			t.Fatalf("VM %d reads %q after the overwrite", i, got)
		}
	}
	b.mustSh(t, "rm /data/a.txt")
	if _, err := os.Stat(filepath.Join(host, "a.txt")); !os.IsNotExist(err) {
		t.Fatalf("a file VM b removed is still on the host: %v", err)
	}
	if out, _, code := a.sh(t, "cat /data/a.txt"); code == 0 {
		t.Fatalf("VM a still reads a removed file: %q", out)
	}
}

// TestReadOnlyShare: a read-only share refuses writes, even after the
// guest remounts it read-write (the host serves it from a read-only
// mount), while the host still reads and writes the directory.
func TestReadOnlyShare(t *testing.T) {
	host := t.TempDir()
	writeHost(t, host, "given.txt", "from-host\n")
	v := bootVMs(t, 1, vmOptions{shares: []vm.Share{{Tag: "ro", HostPath: host, ReadOnly: true}}})[0]
	// CAP_SYS_ADMIN on top of the defaults: the container can remount.
	v.create(t, &api.CreateContainerRequest{ContainerId: "c",
		Mounts:   []*api.Mount{{Type: "share", Source: "ro", Destination: "/ro", ReadOnly: true}},
		Security: &api.Security{Capabilities: append([]string{"CAP_SYS_ADMIN"}, security.DefaultCapabilities...)}})
	if got := v.mustSh(t, "cat /ro/given.txt"); got != "from-host\n" {
		t.Fatalf("guest reads %q from the read-only share", got)
	}
	_, errOut, code := v.sh(t, "echo x > /ro/guest.txt")
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("writing into the read-only share: exit %d, %q", code, errOut)
	}
	v.mustSh(t, "mount -o remount,rw /ro")
	_, errOut, code = v.sh(t, "echo x > /ro/guest.txt")
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Fatalf("writing after a guest remount read-write: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(host, "guest.txt")); !os.IsNotExist(err) {
		t.Fatalf("the guest created a file in a read-only share: %v", err)
	}
	writeHost(t, host, "later.txt", "host-still-writes\n")
	if got := v.mustSh(t, "cat /ro/later.txt"); got != "host-still-writes\n" {
		t.Fatalf("guest reads %q of a file the host wrote later", got)
	}
}

// bootVMs boots n VMs at once.
func bootVMs(t *testing.T, n int, o vmOptions) []*testVM {
	t.Helper()
	buildFixtures(t) // once, before the parallel boots
	vms := make([]*testVM, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range vms {
		wg.Go(func() { vms[i], errs[i] = launchVM(t, o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
	}
	return vms
}

func readHost(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	return string(b)
}

func writeHost(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatalf("host: %v", err)
	}
}
