package container

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Defaults for a container that does not say.
const (
	// DefaultMemoryBytes is the memory of a container without a size (the
	// CLI's --memory default; the provider passes its own).
	DefaultMemoryBytes = 512 << 20
	// DefaultOverheadBytes is added to every VM for the guest kernel, the
	// agent and page cache of the root filesystem, so the container gets
	// the memory it asked for. Apple's containerization adds 128 MiB; Kata
	// documents 130-320 MiB of pod overhead. The provider counts it
	// against the node's allocatable memory.
	DefaultOverheadBytes = 128 << 20
	// DefaultScratchBytes is the size of the sparse writable layer disk.
	DefaultScratchBytes = 10 << 30
	// DefaultVolumeDiskBytes is the size of a volume disk (MountDisk)
	// nobody sized: a pod's emptyDir without sizeLimit, the CLI's
	// anonymous volume. The kubelet bounds such a volume only by the
	// node's disk; a sparse image costs nothing until written, so the cap
	// is generous.
	DefaultVolumeDiskBytes = 10 << 30
)

// shareTag names the virtio-fs tag of a container's n-th shared mount.
func shareTag(n int) string { return "vkav-share" + strconv.Itoa(n) }

// volumeDiskSerials names the disks of a container's MountDisk mounts by
// image path, in mount order: one disk per image, however many times the
// container mounts it. "vkav-vol<n>" fits virtio-blk's 20-byte serial.
func volumeDiskSerials(mounts []Mount) map[string]string {
	out := map[string]string{}
	for _, m := range mounts {
		if m.Kind == MountDisk {
			if _, ok := out[m.HostPath]; !ok {
				out[m.HostPath] = "vkav-vol" + strconv.Itoa(len(out))
			}
		}
	}
	return out
}

// machineSpec turns a VM into the VM description backends boot.
type machineInputs struct {
	ID, Arch, Kernel, Initrd string
	Dir                      string
	Rootfs, Scratch          string
	Endpoint                 *network.Endpoint
	Cfg                      VMConfig
	Overhead                 uint64
	// Rosetta shares Rosetta with the guest (needsRosetta said so).
	Rosetta bool
}

func machineSpec(in machineInputs) vm.Spec {
	cfg := in.Cfg
	mem := cfg.MemoryBytes
	if mem == 0 {
		mem = DefaultMemoryBytes
	}
	cpus := cfg.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	spec := vm.Spec{
		ID:        in.ID,
		Arch:      in.Arch,
		Kernel:    in.Kernel,
		Initrd:    in.Initrd,
		CPUs:      cpus,
		MemoryMiB: (mem + in.Overhead + (1<<20 - 1)) >> 20,
		Disks: []vm.Disk{
			{Serial: vm.DiskRootfs, Path: in.Rootfs, ReadOnly: true},
			{Serial: vm.DiskScratch, Path: in.Scratch},
		},
		Ports:      []string{vm.AgentPort, vm.LogPort},
		ConsoleLog: path.Join(in.Dir, "console.log"),
		Rosetta:    in.Rosetta,
	}
	n := 0
	serials := volumeDiskSerials(cfg.Mounts)
	attached := map[string]bool{}
	for _, m := range cfg.Mounts {
		switch m.Kind {
		case MountShare:
			spec.Shares = append(spec.Shares, vm.Share{Tag: shareTag(n), HostPath: m.HostPath, ReadOnly: m.ReadOnly})
			n++
		case MountDisk:
			if !attached[m.HostPath] {
				attached[m.HostPath] = true
				// Discard: files deleted in the guest give their blocks
				// back to the sparse image, so its allocated size is the
				// volume's usage (what eviction measures).
				spec.Disks = append(spec.Disks, vm.Disk{Serial: serials[m.HostPath], Path: m.HostPath, Discard: true})
			}
		}
	}
	if in.Endpoint != nil {
		spec.NICs = []vm.NIC{in.Endpoint.NIC}
	}
	return spec
}

// setupRequest is the guest configuration pushed once after boot.
func setupRequest(cfg VMConfig, ep *network.Endpoint, now time.Time) *api.SetupRequest {
	req := &api.SetupRequest{TimeUnixNs: now.UnixNano(), Hostname: cfg.Hostname}
	if ep != nil {
		g := ep.Guest
		iface := &api.Interface{Mac: g.MAC, Mtu: uint32(g.MTU), Name: "eth0"}
		if g.Address.IsValid() {
			iface.Addresses = []string{g.Address.String()}
		}
		req.Interfaces = []*api.Interface{iface}
		if g.Gateway.IsValid() {
			if g.OnLinkGateway {
				// A /32 address: the gateway is reached by a link route.
				req.Routes = append(req.Routes, &api.Route{Destination: netip.PrefixFrom(g.Gateway, 32).String(), InterfaceName: "eth0"})
			}
			req.Routes = append(req.Routes, &api.Route{Destination: "0.0.0.0/0", Gateway: g.Gateway.String(), InterfaceName: "eth0"})
		}
		if g.PortRange != "" {
			req.Sysctls = map[string]string{"net.ipv4.ip_local_port_range": g.PortRange}
		}
		dns := &api.DNS{}
		for _, a := range g.DNS {
			dns.Nameservers = append(dns.Nameservers, a.String())
		}
		req.Dns = dns
		if ep.IP.IsValid() && cfg.Hostname != "" {
			req.Hosts = append(req.Hosts, &api.HostEntry{Ip: ep.IP.String(), Names: []string{cfg.Hostname}})
		}
	}
	if cfg.DNS != nil {
		req.Dns = &api.DNS{Nameservers: cfg.DNS.Nameservers, Searches: cfg.DNS.Searches, Options: cfg.DNS.Options}
	}
	for _, h := range cfg.Hosts {
		req.Hosts = append(req.Hosts, &api.HostEntry{Ip: h.IP, Names: h.Names})
	}
	return req
}

// createContainerRequest describes the container's root filesystem and
// mounts to the agent.
func createContainerRequest(id string, cfg VMConfig) (*api.CreateContainerRequest, error) {
	req := &api.CreateContainerRequest{
		ContainerId: id,
		RootfsDisk:  vm.DiskRootfs,
		ScratchDisk: vm.DiskScratch,
		CpuMillis:   cfg.CPUMillis,
		Hostname:    cfg.Hostname,
	}
	if cfg.LimitMemory {
		req.MemoryLimitBytes = cfg.MemoryBytes
	}
	sec, err := cfg.Security.apiSecurity()
	if err != nil {
		return nil, err
	}
	req.Security = sec
	n := 0
	seen := map[string]bool{}
	serials := volumeDiskSerials(cfg.Mounts)
	for _, m := range cfg.Mounts {
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
			return nil, fmt.Errorf("mount destination %q must be an absolute path other than /", m.Destination)
		}
		if seen[path.Clean(m.Destination)] {
			return nil, fmt.Errorf("mount destination %q used twice", m.Destination)
		}
		seen[path.Clean(m.Destination)] = true
		am := &api.Mount{Destination: m.Destination, ReadOnly: m.ReadOnly, SizeBytes: m.SizeBytes}
		switch m.Kind {
		case MountShare:
			am.Type, am.Source = "share", shareTag(n)
			n++
		case MountFiles:
			am.Type, am.Volume = "files", m.Volume
			for _, f := range m.Files {
				am.Files = append(am.Files, &api.File{Path: f.Path, Content: f.Content, Mode: f.Mode})
			}
		case MountTmpfs:
			am.Type = "tmpfs"
		case MountDisk:
			am.Type, am.Source, am.SizeBytes = "disk", serials[m.HostPath], 0
		default:
			return nil, fmt.Errorf("mount %s: unknown kind %q", m.Destination, m.Kind)
		}
		req.Mounts = append(req.Mounts, am)
	}
	return req, nil
}
