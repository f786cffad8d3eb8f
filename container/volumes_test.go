package container

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

func TestVolumeDisksReachTheVMAndTheAgent(t *testing.T) {
	cfg := VMConfig{Mounts: []Mount{
		{Kind: MountShare, Destination: "/shared", HostPath: "/p/shared"},
		{Kind: MountDisk, Destination: "/data", HostPath: "/p/data.ext4", SizeBytes: 8 << 20},
		{Kind: MountDisk, Destination: "/again", HostPath: "/p/data.ext4", SizeBytes: 8 << 20, ReadOnly: true},
		{Kind: MountDisk, Destination: "/cache", HostPath: "/p/cache.ext4", SizeBytes: 1 << 30},
	}}
	spec := machineSpec(machineInputs{ID: "abc", Dir: "/d", Rootfs: "/r", Scratch: "/s", Cfg: cfg})
	want := []vm.Disk{
		{Serial: vm.DiskRootfs, Path: "/r", ReadOnly: true},
		{Serial: vm.DiskScratch, Path: "/s"},
		{Serial: "vkav-vol0", Path: "/p/data.ext4", Discard: true},
		{Serial: "vkav-vol1", Path: "/p/cache.ext4", Discard: true},
	}
	if len(spec.Disks) != len(want) {
		t.Fatalf("disks %+v", spec.Disks)
	}
	for i := range want {
		if spec.Disks[i] != want[i] {
			t.Errorf("disk %d: %+v, want %+v", i, spec.Disks[i], want[i])
		}
	}
	if len(spec.Shares) != 1 || spec.Shares[0].Tag != shareTag(0) {
		t.Errorf("shares %+v", spec.Shares)
	}
	req, err := createContainerRequest("c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, m := range req.GetMounts() {
		got += m.GetType() + ":" + m.GetSource() + ":" + m.GetDestination() + " "
	}
	if got != "share:vkav-share0:/shared disk:vkav-vol0:/data disk:vkav-vol0:/again disk:vkav-vol1:/cache " {
		t.Errorf("mounts %q", got)
	}
	if req.GetMounts()[1].GetSizeBytes() != 0 || !req.GetMounts()[2].GetReadOnly() {
		t.Errorf("disk mount %v", req.GetMounts())
	}
}

func TestPrepareVolumes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	share := filepath.Join(dir, "volumes", "kubernetes.io~empty-dir", "s")
	disk := filepath.Join(dir, "volumes", "disks", "d.ext4")
	mounts := []Mount{{Kind: MountShare, HostPath: share}, {Kind: MountDisk, HostPath: disk, SizeBytes: 8 << 20}}
	if err := prepareVolumes(mounts); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(share)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("shared emptyDir is %v under umask 022, want 0777 like the kubelet's", fi.Mode())
	}
	di, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if di.Size() != 8<<20 {
		t.Errorf("disk size %d", di.Size())
	}
	// A second VM of the same container reuses both as they are.
	if err := os.WriteFile(filepath.Join(share, "kept"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, []byte("content stands for the volume's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := prepareVolumes(mounts); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(disk); string(b) != "content stands for the volume's data" {
		t.Error("an existing volume disk was recreated")
	}
	if _, err := os.Stat(filepath.Join(share, "kept")); err != nil {
		t.Error(err)
	}
	if err := prepareVolumes([]Mount{{Kind: MountDisk, HostPath: filepath.Join(dir, "nosize")}}); err == nil {
		t.Error("a disk without a size was made")
	}
}

// A volume disk without an image path is the VM's own: its image goes in
// the VM's directory (one each, in mount order), and the caller's mounts
// are left as they were.
func TestPlaceOwnVolumeDisks(t *testing.T) {
	in := []Mount{
		{Kind: MountDisk, Destination: "/a", SizeBytes: 1},
		{Kind: MountShare, Destination: "/s", HostPath: "/host"},
		{Kind: MountDisk, Destination: "/pod", HostPath: "/pod/v.ext4", SizeBytes: 1},
		{Kind: MountDisk, Destination: "/b", SizeBytes: 1},
	}
	got := placeOwnVolumeDisks("/vms/0123456789ab", in)
	want := []string{"/vms/0123456789ab/volumes/volume0.ext4", "/host", "/pod/v.ext4", "/vms/0123456789ab/volumes/volume1.ext4"}
	for i := range want {
		if got[i].HostPath != want[i] {
			t.Errorf("mount %s: image %q, want %q", got[i].Destination, got[i].HostPath, want[i])
		}
	}
	if in[0].HostPath != "" || in[3].HostPath != "" {
		t.Errorf("the caller's mounts changed: %+v", in)
	}
}
