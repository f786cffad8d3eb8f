// Package container runs one OCI container in one VM: it turns an image
// into a read-only ext4 root disk, adds a writable scratch disk and a network
// endpoint, boots the VM through its shim, and drives the guest agent. The
// CLI (`vk-applevm run`) and the Kubernetes provider both sit on it.
//
// A VM is the virtual machine of one container (not a CRI or containerd
// sandbox, which is a pod). A container restart (the kubelet's notion: a new
// process with a fresh writable layer) happens inside the same VM, so the IP
// and the VM stay while the process is replaced.
package container

import (
	"errors"
	"io"
	"time"

	"github.com/vk-applevm/vk-applevm/network"
)

// VMConfig describes the VM of one container.
type VMConfig struct {
	// ID is the VM id (see vm.Spec.ID). Empty: a random one. The provider
	// derives it from the pod UID and container name so a restarted node
	// finds the VM again.
	ID string `json:"id"`
	// Name is a human name (CLI --name, or <ns>/<pod>/<container>).
	Name string `json:"name"`
	// Labels are free-form metadata kept with the VM; the provider
	// records the pod it belongs to.
	Labels map[string]string `json:"labels,omitempty"`
	// ImageRef is the image as the user wrote it; the runtime resolves it
	// through the local store (pull first).
	ImageRef string `json:"imageRef"`
	// Platform overrides the image platform ("linux/amd64" on Apple Silicon
	// goes through Rosetta).
	Platform string `json:"platform,omitempty"`
	// CPUs is the number of vCPUs; 0 means 1.
	CPUs int `json:"cpus,omitempty"`
	// MemoryBytes is the memory available to the container; the VM gets it
	// plus the runtime's per-VM overhead. 0 means the runtime default.
	MemoryBytes uint64 `json:"memoryBytes,omitempty"`
	// LimitMemory also sets the container cgroup's memory.max to
	// MemoryBytes, so exceeding it is an OOM kill of the container (the
	// kubelet's limits.memory) rather than memory pressure in the guest.
	LimitMemory bool `json:"limitMemory,omitempty"`
	// MemoryRequestBytes is the memory the scheduler reserved for the
	// container (its request): a memory balloon (vz) never takes the
	// guest below it plus the overhead. 0: only the overhead is kept.
	MemoryRequestBytes uint64 `json:"memoryRequestBytes,omitempty"`
	// CPUMillis caps the container's CPU (cgroup cpu.max); 0 = no cap.
	CPUMillis uint32 `json:"cpuMillis,omitempty"`
	// ScratchBytes is the size of the writable layer disk (sparse).
	ScratchBytes int64  `json:"scratchBytes,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	// DNS and Hosts override the defaults the network gives the guest.
	DNS   *DNS        `json:"dns,omitempty"`
	Hosts []HostEntry `json:"hosts,omitempty"`
	// Mounts are the container's volumes.
	Mounts []Mount `json:"mounts,omitempty"`
	// Network places the VM on the pod network; zero: a pod of its own.
	Network network.AttachOptions `json:"network,omitzero"`
	// Publish reaches the VM's ports at host addresses (`run -p`); the
	// runtime withdraws them when the VM is deleted.
	Publish []network.PublishedPort `json:"publish,omitempty"`
	// LogDir receives the container's logs (<LogDir>/<LogName>.log).
	LogDir string `json:"logDir"`
	// Security is the isolation of the container's processes in the VM.
	Security Security `json:"security,omitempty"`
}

// DNS is the guest's resolver configuration.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Searches    []string `json:"searches,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// HostEntry is one /etc/hosts line.
type HostEntry struct {
	IP    string   `json:"ip"`
	Names []string `json:"names"`
}

// MountKind says where a mount's content comes from.
type MountKind string

const (
	// MountShare is a host directory shared into the VM over virtio-fs:
	// emptyDir volumes shared by a pod's VMs.
	MountShare MountKind = "share"
	// MountFiles is a tmpfs the host fills and updates atomically through
	// the agent: configMap, secret, projected and downwardAPI volumes.
	MountFiles MountKind = "files"
	// MountTmpfs is an empty tmpfs (emptyDir with medium Memory).
	MountTmpfs MountKind = "tmpfs"
	// MountDisk is a sparse ext4 disk image at HostPath, made with
	// SizeBytes when missing and reused as it is otherwise, attached to
	// the VM and mounted by the agent: an emptyDir only one container of
	// the pod mounts. Unlike a share it has full POSIX semantics (chown to
	// any uid, fsGroup) on every backend (vz's virtio-fs is single-uid and
	// cannot chown, Code-Hex/vz#61), and its size is an exact cap.
	MountDisk MountKind = "disk"
)

// Mount is one volume mount of the container.
type Mount struct {
	Kind        MountKind `json:"kind"`
	Destination string    `json:"destination"`
	ReadOnly    bool      `json:"readOnly,omitempty"`
	// HostPath is the shared directory (MountShare) or the disk image
	// (MountDisk). A MountDisk without one is the VM's own volume (the
	// CLI's anonymous `-v /data`): Create places its image in the VM's
	// directory, so it goes with the VM, and records the path here.
	HostPath string `json:"hostPath,omitempty"`
	// Volume names a files volume, for WriteFiles (MountFiles).
	Volume string `json:"volume,omitempty"`
	// Files is the initial content (MountFiles).
	Files []File `json:"-"`
	// SizeBytes limits a tmpfs (0: kernel default) or sizes a new disk
	// image (MountDisk, required).
	SizeBytes uint64 `json:"sizeBytes,omitempty"`
}

// File is one file of a files volume.
type File struct {
	Path    string
	Content []byte
	Mode    uint32
}

// ProcessConfig describes a process to run in a VM.
type ProcessConfig struct {
	// ID names the process within the VM ("main-3", an exec id).
	ID   string
	Args []string
	Env  []string
	Cwd  string
	// User is "uid[:gid]" or a name looked up in the image's /etc/passwd;
	// UID/GID, when set, win.
	User           string
	UID, GID       *uint32
	AdditionalGIDs []uint32
	TTY            bool
	Stdin          bool
	// LogName, when set, persists stdout/stderr as <LogDir>/<LogName>.log.
	LogName string
	// Rows and Cols are the initial terminal size.
	Rows, Cols uint16
}

// IO connects a caller to a process's standard streams. Nil members are not
// attached.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Resize delivers terminal size changes (TTY only).
	Resize <-chan TermSize
}

// TermSize is a terminal size in characters.
type TermSize struct {
	Rows, Cols uint16
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code; 128+Signal when killed by a signal.
	Code       int
	Signal     int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// Stats is a sample of a VM's resource use.
type Stats struct {
	Time time.Time
	// Container cgroup.
	CPUUsageNanos      uint64
	MemoryUsageBytes   uint64
	MemoryWorkingSet   uint64
	MemoryRSSBytes     uint64
	OOMKills           uint64
	Processes          uint64
	ScratchUsedBytes   uint64
	ScratchTotalBytes  uint64
	GuestMemoryBytes   uint64
	GuestMemoryFree    uint64
	GuestCPUUsageNanos uint64
	// HostMemoryBytes is the resident memory of the VM on the host (the
	// hypervisor process), what the VM really costs the node; 0 when it is
	// unknown (vz: see hostMemory).
	HostMemoryBytes uint64
}

// Errors a caller can test for with errors.Is.
var (
	// ErrNotFound: no such VM or process.
	ErrNotFound = errors.New("not found")
	// ErrCommandNotFound: the executable does not exist in the image (exit 127).
	ErrCommandNotFound = errors.New("executable file not found")
	// ErrCommandNotExecutable: the executable cannot be run (exit 126).
	ErrCommandNotExecutable = errors.New("permission denied")
	// ErrStopped: the VM is not running.
	ErrStopped = errors.New("VM is not running")
	// ErrExited: Attach to a logged process that has already exited and was
	// attached to before; its output is in its log.
	ErrExited = errors.New("process has exited")
)
