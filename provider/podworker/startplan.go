package podworker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
)

// startPlan is everything one start of a container needs, built once per
// start from the spec, the image and the pod, before any VM exists: a
// configuration error (a missing configMap key, say) costs no VM. The pod's
// address, known only once the VM runs, is bound last (bind).
type startPlan struct {
	// VM is what the container's VM is created with when it has none.
	VM container.VMConfig
	// Process is the main process; see bind.
	Process container.ProcessConfig
	// Events are environment warnings to record at creation.
	Events []env.Event
}

// podIPPlaceholder stands for status.podIP in a plan made before the VM
// exists. NUL cannot occur in an environment value or an argument, so the
// placeholder cannot collide with what a user wrote, and $(VAR) references
// to the pod IP expand to it and are bound with the rest.
const podIPPlaceholder = "\x00vk-applevm:podIP\x00"

// bind returns the process with the pod's address in place.
func (p startPlan) bind(podIP string) container.ProcessConfig {
	proc := p.Process
	sub := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = strings.ReplaceAll(s, podIPPlaceholder, podIP)
		}
		return out
	}
	proc.Env, proc.Args = sub(proc.Env), sub(proc.Args)
	return proc
}

// processID names instance n of a container's main process.
func processID(instance int32) string { return "main-" + strconv.Itoa(int(instance)) }

// plan builds the start of instance of a container.
func (w *Worker) plan(ctx context.Context, spec *corev1.Container, img vmruntime.ImageInfo, instance int32) (startPlan, error) {
	pod := w.Pod()
	var p startPlan
	vars, events, err := env.ContainerEnv(pod, spec, env.Context{
		Objects: w.cfg.Objects, PodIP: podIPPlaceholder, HostIP: w.cfg.NodeIP, NodeAllocatable: w.cfg.Allocatable,
	})
	p.Events = events
	if err != nil {
		return p, err
	}
	proc, err := processUser(pod, spec, img)
	if err != nil {
		return p, err
	}
	proc.Env = env.Merge(img.Env, vars)
	if proc.Args, err = processArgs(spec, img, vars); err != nil {
		return p, err
	}
	proc.Cwd = spec.WorkingDir
	if proc.Cwd == "" {
		proc.Cwd = img.WorkingDir
	}
	proc.ID = processID(instance)
	proc.LogName = strconv.Itoa(int(instance))
	if err := pruneInstanceLogs(filepath.Join(w.dir(), spec.Name), instance); err != nil {
		w.log.Warn("remove the logs of old instances", "container", spec.Name, "err", err)
	}
	proc.TTY, proc.Stdin = spec.TTY, spec.Stdin
	p.Process = proc

	w.podDir.Do(func() { w.podDirErr = makePodDir(w.dir()) })
	if w.podDirErr != nil {
		return p, w.podDirErr
	}
	mounts, err := mountsFor(pod, spec, w.dir())
	if err != nil {
		return p, err
	}
	for i := range mounts {
		if mounts[i].Kind != container.MountFiles {
			continue
		}
		files, err := w.volumes.Files(ctx, mounts[i].Volume)
		if err != nil {
			w.eventf(corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed for volume %q : %v", mounts[i].Volume, err)
			return p, env.ConfigErrorf("volume %q: %v", mounts[i].Volume, err)
		}
		mounts[i].Files = files
	}
	sec, err := securityFor(pod, spec, w.cfg.Root)
	if err != nil {
		return p, err
	}
	size := w.cfg.Sizing.VMSizeFor(spec)
	p.VM = container.VMConfig{
		ID:   VMID(string(pod.UID), spec.Name),
		Name: pod.Namespace + "/" + pod.Name + "/" + spec.Name,
		Labels: map[string]string{
			LabelNamespace: pod.Namespace, LabelPodName: pod.Name,
			LabelPodUID: string(pod.UID), LabelContainer: spec.Name,
		},
		ImageRef:    spec.Image,
		CPUs:        size.CPUs,
		MemoryBytes: size.MemoryBytes,
		LimitMemory: size.LimitMemory,
		CPUMillis:   size.CPUMillis,
		Hostname:    podHostname(pod),
		DNS:         w.podDNS(pod),
		Hosts:       hostAliases(pod),
		Mounts:      mounts,
		Network:     podnet.Placement(pod, spec.Name),
		LogDir:      filepath.Join(w.dir(), spec.Name),
		Security:    sec,

		MemoryRequestBytes: size.MemoryRequestBytes, // what a balloon (vz) leaves the guest at least
	}
	if q, ok := spec.Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
		p.VM.ScratchBytes = q.Value()
	}
	return p, nil
}

// podDirMode keeps other local users out of a pod's directory, as the
// kubelet's pods directory is 0750: its emptyDirs are the container's to
// write (world-writable, so any uid in the VM can) and hold whatever a
// root container put there.
const podDirMode = 0o750

// makePodDir creates the pod's directory, or narrows the mode of one made
// by an older node.
func makePodDir(dir string) error {
	if err := os.MkdirAll(dir, podDirMode); err != nil {
		return fmt.Errorf("create the pod directory: %w", err)
	}
	if err := os.Chmod(dir, podDirMode); err != nil {
		return fmt.Errorf("restrict the pod directory: %w", err)
	}
	return nil
}

// podHostname is the pod's hostname (spec.hostname or the pod name,
// truncated to 63 characters as the kubelet does).
func podHostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func hostAliases(pod *corev1.Pod) []container.HostEntry {
	var out []container.HostEntry
	for _, a := range pod.Spec.HostAliases {
		out = append(out, container.HostEntry{IP: a.IP, Names: a.Hostnames})
	}
	return out
}

// podDNS applies the pod's dnsPolicy and dnsConfig as the kubelet writes
// resolv.conf; nil means the runtime's default (the gateway, which forwards
// to the node's resolvers). ClusterFirst asks the --cluster-dns servers,
// else the pod network's gateway, which answers cluster names itself.
func (w *Worker) podDNS(pod *corev1.Pod) *container.DNS {
	var dns *container.DNS
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
		dns = &container.DNS{}
	case corev1.DNSDefault:
	default: // ClusterFirst, ClusterFirstWithHostNet
		servers := w.cfg.ClusterDNS
		if len(servers) == 0 && w.cfg.Network != nil {
			servers = []string{w.cfg.Network.Gateway().String()}
		}
		if len(servers) > 0 {
			d := w.cfg.ClusterDomain
			dns = &container.DNS{
				Nameservers: append([]string{}, servers...),
				Searches:    []string{pod.Namespace + ".svc." + d, "svc." + d, d},
				Options:     []string{"ndots:5"},
			}
		}
	}
	if cfg := pod.Spec.DNSConfig; cfg != nil {
		if dns == nil {
			dns = &container.DNS{}
		}
		dns.Nameservers = append(dns.Nameservers, cfg.Nameservers...)
		dns.Searches = append(dns.Searches, cfg.Searches...)
		for _, o := range cfg.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			dns.Options = append(dns.Options, opt)
		}
	}
	return dns
}
