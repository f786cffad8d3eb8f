//go:build darwin && !no_vz

package vz

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/network/switchport"

	"github.com/vk-applevm/vk-applevm/vm"
)

// shortDir is a temp dir under /tmp: macOS's default temp dir is too deep
// for the 104-byte unix socket path limit.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// configure builds real vz objects from a described spec; it needs neither
// the entitlement nor virtualization hardware, so it runs on hosted CI.
func TestConfigureBuildsEveryDevice(t *testing.T) {
	dir := shortDir(t)
	cable, sw, err := switchport.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()

	spec := baseSpec(t)
	spec.Initrd = touch(t, filepath.Join(dir, "initrd"))
	spec.Disks = []vm.Disk{
		{Serial: vm.DiskRootfs, Path: touch(t, filepath.Join(dir, "rootfs.ext4")), ReadOnly: true},
		{Serial: vm.DiskScratch, Path: touch(t, filepath.Join(dir, "scratch.ext4"))},
	}
	spec.NICs = []vm.NIC{
		{MAC: "52:54:00:12:34:56", Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: "/unused/ports.sock", File: cable}},
	}
	spec.Shares = []vm.Share{{Tag: "data", HostPath: dir, ReadOnly: true}}

	cfg, err := Describe(spec, hostLimits())
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	config, ends, err := configure(cfg, dir)
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	defer ends.closeAll()

	if n := len(config.NetworkDevices()); n != 2 {
		t.Errorf("%d network devices, want 2", n)
	}
	if n := len(config.StorageDevices()); n != 2 {
		t.Errorf("%d storage devices, want 2", n)
	}
	if len(ends.ports) != 2 || ends.ports[vm.AgentPort] == nil || ends.ports[vm.LogPort] == nil {
		t.Fatalf("port ends %v, want %s and %s", ends.ports, vm.AgentPort, vm.LogPort)
	}

	// The NIC's datagram socket is connected to the switch (the socket
	// plumbing itself is tested on every platform in ends_test.go).
}

func TestConfigureNeedsTheShimsSocket(t *testing.T) {
	dir := shortDir(t)
	spec := baseSpec(t)
	spec.Initrd = touch(t, filepath.Join(dir, "initrd"))
	spec.NICs = []vm.NIC{{MAC: "52:54:00:12:34:56", Attachment: vm.Attachment{Kind: vm.AttachSwitch, Socket: filepath.Join(dir, "ports.sock")}}}
	cfg, err := Describe(spec, hostLimits())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := configure(cfg, dir); err == nil || !strings.Contains(err.Error(), "no socket from the shim") {
		t.Fatalf("configure without the NIC's socket: %v", err)
	}
}

func TestHostReport(t *testing.T) {
	report, err := New(Options{}).Host(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l := report.Limits
	if report.MacOSVersion == "" || l.MinCPUs < 1 || l.MaxCPUs < l.MinCPUs || l.MaxMemoryBytes < l.MinMemoryBytes || l.MinMemoryBytes == 0 {
		t.Errorf("implausible host report %+v", report)
	}
}
