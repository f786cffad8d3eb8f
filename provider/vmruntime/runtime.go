// Package vmruntime is the container runtime as the provider sees it: images
// and one VM per container, behind two small interfaces. Package container
// implements them (Adapter); the provider's unit tests use an in-memory
// fake (vmruntimetest).
package vmruntime

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/network"
	corev1 "k8s.io/api/core/v1"
)

// Runtime is what the provider needs from the VM runtime.
type Runtime interface {
	// EnsureImage makes ref available locally following policy and
	// returns its identity; pulling is called just before a download
	// starts (the kubelet's Pulling event).
	EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, pullSecrets []image.PullSecret, pulling func()) (ImageInfo, error)
	// CreateVM boots the VM of one container.
	CreateVM(ctx context.Context, cfg container.VMConfig) (VM, error)
	// VMs lists every VM this runtime knows, for reconciliation.
	VMs(ctx context.Context) ([]VM, error)
	// Check reports whether new VMs can be started (hypervisor, disk).
	Check(ctx context.Context) error
}

// ErrNeverPull: the image is absent and the pull policy is Never.
var ErrNeverPull = errors.New("image is not present with pull policy of Never")

// ImageInfo identifies a pulled image the way the kubelet reports it.
type ImageInfo struct {
	// Ref is the normalised reference (docker.io/library/busybox:latest).
	Ref string
	// ID is the pullable digest reference (docker.io/library/busybox@sha256:…).
	ID string
	// Entrypoint, Cmd, Env, WorkingDir, User come from the image config.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// Pulled is true when this call downloaded the image; PullDuration
	// is how long the download took.
	Pulled       bool
	PullDuration time.Duration
	// Size is the image's size in bytes (its blobs as stored).
	Size int64
}

// VM is the VM of one container. A container restart is a new process in
// the same VM after Reset.
type VM interface {
	ID() string
	Labels() map[string]string
	// IP is the VM's address on the node's VM network.
	IP() string
	// Running reports whether the VM is up.
	Running(ctx context.Context) bool
	// Reset gives the container a fresh writable layer before a restart.
	Reset(ctx context.Context) error
	// Start runs a process; it returns when the process has started.
	Start(ctx context.Context, p container.ProcessConfig) (time.Time, error)
	// Wait blocks until the process exits.
	Wait(ctx context.Context, processID string) (container.ExitStatus, error)
	// Exec runs a process to completion with its streams attached.
	Exec(ctx context.Context, p container.ProcessConfig, stdio container.IO) (container.ExitStatus, error)
	// Attach connects to a running process's streams until it exits.
	Attach(ctx context.Context, processID string, stdio container.IO) error
	// Signal sends sig to the process (all=true: every process of the
	// container).
	Signal(ctx context.Context, processID string, sig syscall.Signal, all bool) error
	// WriteFiles atomically replaces a files volume's content.
	WriteFiles(ctx context.Context, volume string, files []container.File) error
	// ReadFile returns at most the last max bytes of a file in the
	// container's root filesystem (the termination message).
	ReadFile(ctx context.Context, path string, max int64) ([]byte, error)
	// Forward connects conn to a TCP port inside the VM.
	Forward(ctx context.Context, port uint16, conn io.ReadWriteCloser) error
	Stats(ctx context.Context) (container.Stats, error)
	// Delete stops the VM if needed and frees everything it holds (disk,
	// IP); logs stay.
	Delete(ctx context.Context) error
	// Listeners waits up to wait for the ports the guest listens on to
	// differ from version known ("" answers at once).
	Listeners(ctx context.Context, known string, wait time.Duration) ([]network.Port, string, error)
	// SetRelays makes localhost:port inside the VM reach the pod's
	// container that serves it, through the gateway's relay at via; it
	// returns the ports this VM's own processes hold.
	SetRelays(ctx context.Context, via netip.AddrPort, tcpPorts []uint16) ([]uint16, error)
}

// PodNetwork is the node's pod network as the pod workers use it
// (network/switchnet): the address a pod's VMs share, what their agents
// find listening, and the way the node reaches into it.
type PodNetwork interface {
	// Gateway is the pods' default route, DNS server and relay.
	Gateway() netip.Addr
	// SetListeners tells the switch what VM vmID was found listening on.
	SetListeners(ctx context.Context, vmID string, ports []network.Port) error
	// ReleasePod frees a pod's address once none of its VMs is left.
	ReleasePod(ctx context.Context, pod string) error
	// DialContext connects to an address inside the pod network, as a pod
	// on another node would: the node's probes.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}
