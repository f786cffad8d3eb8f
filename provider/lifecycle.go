package provider

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// errNeverPull: the image is absent and the pull policy is Never.
var errNeverPull = errors.New("image is not present with pull policy of Never")

// pullImage makes the container's image available, with the kubelet's
// events and waiting reasons.
func (w *podWorker) pullImage(ctx context.Context, c *ctrState, spec *corev1.Container) (ImageInfo, error) {
	policy := spec.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if ref := spec.Image; !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") || strings.HasSuffix(ref, ":latest") {
			policy = corev1.PullAlways
		}
	}
	secrets := w.pullSecrets()
	start := time.Now()
	pulling := func() { w.eventf(corev1.EventTypeNormal, "Pulling", "Pulling image %q", spec.Image) }
	img, err := w.p.cfg.Runtime.EnsureImage(ctx, spec.Image, policy, secrets, pulling)
	if err != nil {
		if ctx.Err() != nil {
			return img, err
		}
		if errors.Is(err, errNeverPull) {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image)
			w.eventf(corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			w.mu.Lock()
			c.setWaiting(reasonErrImageNeverPull, msg)
			w.mu.Unlock()
			w.publish()
			return img, err
		}
		w.eventf(corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", spec.Image, err)
		w.eventf(corev1.EventTypeWarning, "Failed", "Error: %s", reasonErrImagePull)
		w.mu.Lock()
		c.setWaiting(reasonErrImagePull, fmt.Sprintf("failed to pull image %q: %v", spec.Image, err))
		w.mu.Unlock()
		w.publish()
		return img, err
	}
	if img.Pulled {
		// The kubelet's words (pkg/kubelet/images/image_manager.go).
		w.eventf(corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes.",
			spec.Image, img.PullDuration.Truncate(time.Millisecond), time.Since(start).Truncate(time.Millisecond), img.Size)
	} else {
		if policy == corev1.PullAlways {
			w.eventf(corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q (already up to date)", spec.Image)
		} else {
			w.eventf(corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", spec.Image)
		}
	}
	w.mu.Lock()
	c.Image, c.ImageID = spec.Image, img.ID
	w.mu.Unlock()
	return img, nil
}

// pullSecrets reads the pod's imagePullSecrets; a missing one is reported
// and skipped, as the kubelet does.
func (w *podWorker) pullSecrets() []image.PullSecret {
	pod := w.spec()
	var out []image.PullSecret
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := w.p.cfg.Objects.Secret(pod.Namespace, ref.Name)
		if err != nil {
			w.eventf(corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
				"Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name)
			continue
		}
		out = append(out, image.PullSecret{Name: pod.Namespace + "/" + ref.Name,
			DockerConfigJSON: s.Data[corev1.DockerConfigJsonKey], DockerCfg: s.Data[corev1.DockerConfigKey]})
	}
	return out
}

// plan builds the VM configuration (volumes, size, DNS); the process is
// planned by processPlan once the VM's address is known.
func (w *podWorker) plan(ctx context.Context, c *ctrState, spec *corev1.Container, img ImageInfo) (container.SandboxConfig, container.ProcessConfig, error) {
	pod := w.spec()
	podDir := w.p.podDir(pod)
	mounts, err := mountsFor(pod, spec, podDir)
	if err != nil {
		return container.SandboxConfig{}, container.ProcessConfig{}, err
	}
	for i := range mounts {
		if mounts[i].Kind != container.MountFiles {
			continue
		}
		files, err := w.volumes.files(ctx, mounts[i].Volume)
		if err != nil {
			w.eventf(corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed for volume %q : %v", mounts[i].Volume, err)
			return container.SandboxConfig{}, container.ProcessConfig{}, configErrorf("volume %q: %v", mounts[i].Volume, err)
		}
		mounts[i].Files = files
	}
	sec, err := securityFor(pod, spec, w.p.cfg.Root)
	if err != nil {
		return container.SandboxConfig{}, container.ProcessConfig{}, err
	}
	size := w.p.sizing.vmSizeFor(spec)
	cfg := container.SandboxConfig{
		ID:   sandboxID(string(pod.UID), c.Name),
		Name: pod.Namespace + "/" + pod.Name + "/" + c.Name,
		Labels: map[string]string{
			labelNamespace: pod.Namespace, labelPodName: pod.Name,
			labelPodUID: string(pod.UID), labelContainer: c.Name,
		},
		ImageRef:    spec.Image,
		CPUs:        size.CPUs,
		MemoryBytes: size.MemoryBytes,
		LimitMemory: size.LimitMemory,
		CPUMillis:   size.CPUMillis,
		Hostname:    podHostname(pod),
		DNS:         w.p.podDNS(pod),
		Hosts:       hostAliases(pod),
		Mounts:      mounts,
		LogDir:      filepath.Join(podDir, c.Name),
		Security:    sec,
	}
	if q, ok := spec.Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
		cfg.ScratchBytes = q.Value()
	}
	return cfg, container.ProcessConfig{}, nil
}

// processPlan builds the main process of a container instance; sb is nil
// for a check before the VM exists.
func (w *podWorker) processPlan(c *ctrState, spec *corev1.Container, img ImageInfo, sb Sandbox) (container.ProcessConfig, []podEvent, error) {
	pod := w.spec()
	podIP := ""
	if sb != nil {
		podIP = sb.IP()
	}
	env, events, err := containerEnv(pod, spec, envContext{
		objects: w.p.cfg.Objects, podIP: podIP, hostIP: w.p.cfg.NodeIP, nodeAllocatable: w.p.cfg.Allocatable,
	})
	if err != nil {
		return container.ProcessConfig{}, events, err
	}
	proc, err := processUser(pod, spec, img)
	if err != nil {
		return proc, events, err
	}
	proc.Env = mergeEnv(img.Env, env)
	proc.Args, err = processArgs(spec, img, env)
	if err != nil {
		return proc, events, err
	}
	proc.Cwd = spec.WorkingDir
	if proc.Cwd == "" {
		proc.Cwd = img.WorkingDir
	}
	proc.ID = processID(c.RestartCount)
	proc.LogName = strconv.Itoa(int(c.RestartCount))
	proc.TTY, proc.Stdin = spec.TTY, spec.Stdin
	return proc, events, nil
}

// ensureSandbox returns the container's VM, creating it on first use and
// giving it a fresh writable layer before a restart.
func (w *podWorker) ensureSandbox(ctx context.Context, c *ctrState, cfg container.SandboxConfig) (Sandbox, error) {
	w.mu.Lock()
	sb := w.sandboxes[c.Name]
	used := w.used[c.Name]
	w.mu.Unlock()
	if sb != nil && !sb.Running(ctx) {
		w.log.Warn("container's VM is not running; creating it again", "container", c.Name, "vm", sb.ID())
		w.deleteSandbox(c.Name)
		sb = nil
	}
	if sb == nil {
		var err error
		sb, err = w.p.cfg.Runtime.CreateSandbox(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("create VM: %w", err)
		}
		w.volumes.remember(c.Name, cfg.Mounts)
		w.mu.Lock()
		c.SandboxID = sb.ID()
		w.sandboxes[c.Name] = sb
		w.used[c.Name] = false
		w.meta.sandboxReady = true
		if !c.Init && w.meta.podIP == "" && w.isFirstApp(c.Name) {
			w.meta.podIP = sb.IP()
		}
		w.mu.Unlock()
		return sb, nil
	}
	if used {
		if err := sb.Reset(ctx); err != nil {
			return nil, fmt.Errorf("reset the writable layer: %w", err)
		}
		// The reset VM has the volume content it was created with.
		w.volumes.forget(c.Name)
		w.volumes.kick()
	}
	return sb, nil
}

func (w *podWorker) isFirstApp(name string) bool {
	return len(w.apps) > 0 && w.apps[0].Name == name
}

// reattach resumes watching a container whose process survived a restart
// of the node. It returns the exit when the process ended (or ends) and
// true, or false when there was nothing to re-attach to.
func (w *podWorker) reattach(ctx context.Context, c *ctrState, spec corev1.Container, markStarted func()) (container.ExitStatus, bool) {
	w.mu.Lock()
	sb := w.adopted[c.Name]
	delete(w.adopted, c.Name)
	wasRunning := c.Running != nil
	restart := c.RestartCount
	w.mu.Unlock()
	if sb == nil {
		w.mu.Lock()
		if c.Running != nil { // the status said running but the VM is gone
			c.setWaiting(reasonContainerCreating, "")
		}
		w.mu.Unlock()
		return container.ExitStatus{}, false
	}
	if !sb.Running(ctx) {
		_ = sb.Delete(ctx)
		w.mu.Lock()
		if c.Running != nil {
			c.setWaiting(reasonContainerCreating, "")
		}
		w.mu.Unlock()
		return container.ExitStatus{}, false
	}
	w.mu.Lock()
	c.SandboxID = sb.ID()
	w.sandboxes[c.Name] = sb
	w.used[c.Name] = true
	w.meta.sandboxReady = true
	if !c.Init && w.isFirstApp(c.Name) {
		w.meta.podIP = sb.IP()
	}
	w.mu.Unlock()
	if !wasRunning {
		return container.ExitStatus{}, false
	}
	procID := processID(restart)
	probeCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	exit, err := sb.Wait(probeCtx, procID)
	cancel()
	switch {
	case err == nil:
		// It ended while the node was away.
		w.recordExit(c, sb, exit, nil)
		return exit, true
	case errors.Is(err, context.DeadlineExceeded):
	default:
		w.log.Warn("cannot re-attach to the container's process; restarting it", "container", c.Name, "err", err)
		w.mu.Lock()
		c.setWaiting(reasonContainerCreating, "")
		w.mu.Unlock()
		return container.ExitStatus{}, false
	}
	w.log.Info("re-attached to a running container", "container", c.Name, "vm", sb.ID())
	w.publish()
	w.mu.Lock()
	startedAt := c.Running.StartedAt.Time
	w.mu.Unlock()
	exit, _, ok := w.watch(ctx, c, sb, spec, procID, startedAt, markStarted)
	if !ok {
		return exit, false
	}
	return exit, true
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

// podDNS applies the pod's dnsPolicy and dnsConfig; nil means the runtime's
// default (the node's resolvers).
func (p *Provider) podDNS(pod *corev1.Pod) *container.DNS {
	var dns *container.DNS
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
		dns = &container.DNS{}
	case corev1.DNSDefault:
	default: // ClusterFirst, ClusterFirstWithHostNet
		if len(p.cfg.ClusterDNS) > 0 {
			d := p.cfg.ClusterDomain
			dns = &container.DNS{
				Nameservers: append([]string{}, p.cfg.ClusterDNS...),
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

// isNotFound reports a missing API object.
func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
