// Package volume computes the content of a pod's files volumes (configMap,
// secret, projected, downwardAPI, service account tokens) and keeps the
// running VMs up to date, as the kubelet's volume manager does:
// configMap/secret and label changes show up inside the VMs, and tokens are
// renewed before they expire. emptyDir volumes need no management here:
// they are host directories shared by the pod's VMs.
package volume

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/internal/authzlag"
	"github.com/vk-applevm/vk-applevm/provider/env"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// Pod is what the manager needs from the pod it serves.
type Pod interface {
	// Pod is the latest pod object.
	Pod() *corev1.Pod
	// PodIP is the pod's address (downward API status.podIP), "" before
	// it has one.
	PodIP() string
	// VMs are the VMs that run the pod's containers now, by container.
	VMs() map[string]Writer
}

// Writer replaces a files volume's content in one container's VM.
type Writer interface {
	WriteFiles(ctx context.Context, volume string, files []container.File) error
}

// Config is what the manager reads objects and tokens with.
type Config struct {
	Objects env.Objects
	// Client requests service account tokens (nil: token volumes fail
	// with a clear error).
	Client kubernetes.Interface
	// HostIP and Allocatable answer the downward API.
	HostIP      string
	Allocatable corev1.ResourceList
	// SyncPeriod is how often volumes are refreshed.
	SyncPeriod time.Duration
	Clock      clock.WithTicker
	Log        *slog.Logger
}

// Manager keeps the files volumes of one pod.
type Manager struct {
	cfg   Config
	pod   Pod
	kickc chan struct{}

	mu     sync.Mutex
	tokens map[string]*cachedToken // key: volume/path
	hashes map[string][32]byte     // key: container/volume, last written
}

type cachedToken struct {
	token   string
	refresh time.Time
}

// NewManager returns the volume manager of pod.
func NewManager(cfg Config, pod Pod) *Manager {
	return &Manager{cfg: cfg, pod: pod, kickc: make(chan struct{}, 1), tokens: map[string]*cachedToken{}, hashes: map[string][32]byte{}}
}

// Kick asks for a refresh now (the pod changed).
func (m *Manager) Kick() {
	select {
	case m.kickc <- struct{}{}:
	default:
	}
}

// Run refreshes the files volumes of running VMs until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := m.cfg.Clock.NewTicker(m.cfg.SyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-m.kickc:
		}
		m.Sync(ctx)
	}
}

// Sync rewrites every files volume whose content changed.
func (m *Manager) Sync(ctx context.Context) {
	pod := m.pod.Pod()
	sbs := m.pod.VMs()
	for _, c := range allContainers(pod) {
		sb := sbs[c.Name]
		if sb == nil {
			continue
		}
		for _, vol := range filesVolumesOf(pod, c) {
			files, err := m.Files(ctx, vol)
			if err != nil {
				m.cfg.Log.Warn("refresh volume", "volume", vol, "container", c.Name, "err", err)
				continue
			}
			sum := hashFiles(files)
			key := c.Name + "/" + vol
			m.mu.Lock()
			same := m.hashes[key] == sum
			m.mu.Unlock()
			if same {
				continue
			}
			if err := sb.WriteFiles(ctx, vol, files); err != nil {
				m.cfg.Log.Warn("update volume in VM", "volume", vol, "container", c.Name, "err", err)
				continue
			}
			m.mu.Lock()
			m.hashes[key] = sum
			m.mu.Unlock()
		}
	}
}

// Remember records what a VM was created with, so sync writes only changes.
func (m *Manager) Remember(containerName string, mounts []container.Mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mt := range mounts {
		if mt.Kind == container.MountFiles {
			m.hashes[containerName+"/"+mt.Volume] = hashFiles(mt.Files)
		}
	}
}

// Forget drops what was written to a container's VM so the next sync
// writes every volume again.
func (m *Manager) Forget(containerName string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.hashes {
		if strings.HasPrefix(k, containerName+"/") {
			delete(m.hashes, k)
		}
	}
}

func filesVolumesOf(pod *corev1.Pod, c *corev1.Container) []string {
	kinds := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil {
			kinds[v.Name] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		if kinds[vm.Name] && !seen[vm.Name] {
			seen[vm.Name] = true
			out = append(out, vm.Name)
		}
	}
	return out
}

func hashFiles(files []container.File) [32]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", f.Path, f.Mode, len(f.Content))
		h.Write(f.Content)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// Files computes the content of the named volume.
func (m *Manager) Files(ctx context.Context, name string) ([]container.File, error) {
	pod := m.pod.Pod()
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil {
		return nil, fmt.Errorf("no volume %q in the pod", name)
	}
	b := &fileSet{}
	var err error
	switch {
	case vol.ConfigMap != nil:
		err = m.configMapFiles(pod, b, vol.ConfigMap.Name, vol.ConfigMap.Items, vol.ConfigMap.Optional, mode(vol.ConfigMap.DefaultMode, 0o644))
	case vol.Secret != nil:
		err = m.secretFiles(pod, b, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional, mode(vol.Secret.DefaultMode, 0o644))
	case vol.DownwardAPI != nil:
		err = m.downwardFiles(pod, b, vol.DownwardAPI.Items, mode(vol.DownwardAPI.DefaultMode, 0o644))
	case vol.Projected != nil:
		def := mode(vol.Projected.DefaultMode, 0o644)
		for _, src := range vol.Projected.Sources {
			switch {
			case src.ConfigMap != nil:
				err = m.configMapFiles(pod, b, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, def)
			case src.Secret != nil:
				err = m.secretFiles(pod, b, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def)
			case src.DownwardAPI != nil:
				err = m.downwardFiles(pod, b, src.DownwardAPI.Items, def)
			case src.ServiceAccountToken != nil:
				err = m.tokenFile(ctx, pod, b, name, src.ServiceAccountToken, def)
			default:
				err = fmt.Errorf("unsupported projected volume source")
			}
			if err != nil {
				break
			}
		}
	default:
		return nil, fmt.Errorf("volume %q is not a files volume", name)
	}
	if err != nil {
		return nil, err
	}
	return b.list(), nil
}

func mode(m *int32, def uint32) uint32 {
	if m != nil {
		return uint32(*m)
	}
	return def
}

// fileSet collects files by path, later sources winning.
type fileSet struct{ files map[string]container.File }

func (s *fileSet) add(p string, content []byte, m uint32) error {
	clean := path.Clean(p)
	if p == "" || path.IsAbs(p) || clean == ".." || strings.HasPrefix(clean, "../") || strings.HasPrefix(p, "..") {
		return fmt.Errorf("invalid path %q: must be relative and must not contain '..'", p)
	}
	if s.files == nil {
		s.files = map[string]container.File{}
	}
	s.files[clean] = container.File{Path: clean, Content: content, Mode: m}
	return nil
}

func (s *fileSet) list() []container.File {
	keys := make([]string, 0, len(s.files))
	for k := range s.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]container.File, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.files[k])
	}
	return out
}

func (m *Manager) configMapFiles(pod *corev1.Pod, b *fileSet, name string, items []corev1.KeyToPath, opt *bool, def uint32) error {
	cm, err := m.cfg.Objects.ConfigMap(pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && env.Optional(opt) {
			return nil
		}
		return fmt.Errorf("configmap %q not found", name)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return project(b, "configmap", name, data, items, opt, def)
}

func (m *Manager) secretFiles(pod *corev1.Pod, b *fileSet, name string, items []corev1.KeyToPath, opt *bool, def uint32) error {
	s, err := m.cfg.Objects.Secret(pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && env.Optional(opt) {
			return nil
		}
		return fmt.Errorf("secret %q not found", name)
	}
	return project(b, "secret", name, s.Data, items, opt, def)
}

// project writes all keys, or only the listed items, of a configMap or
// secret.
func project(b *fileSet, kind, name string, data map[string][]byte, items []corev1.KeyToPath, opt *bool, def uint32) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := b.add(k, v, def); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if env.Optional(opt) {
				continue
			}
			return fmt.Errorf("configuration key %q not found in %s %q", it.Key, kind, name)
		}
		if err := b.add(it.Path, v, mode(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) downwardFiles(pod *corev1.Pod, b *fileSet, items []corev1.DownwardAPIVolumeFile, def uint32) error {
	ec := env.Context{Objects: m.cfg.Objects, PodIP: m.pod.PodIP(), HostIP: m.cfg.HostIP, NodeAllocatable: m.cfg.Allocatable}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = env.FieldValue(pod, it.FieldRef.FieldPath, ec)
		case it.ResourceFieldRef != nil:
			c := env.FindContainer(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return fmt.Errorf("downwardAPI %s: no container %q", it.Path, it.ResourceFieldRef.ContainerName)
			}
			v, err = env.ResourceFieldValue(pod, c, it.ResourceFieldRef, m.cfg.Allocatable)
		default:
			err = fmt.Errorf("no fieldRef or resourceFieldRef")
		}
		if err != nil {
			return fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		if err := b.add(it.Path, []byte(v), mode(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

// tokenFile requests a bound service account token through the TokenRequest
// API and caches it until 80% of its lifetime (or 24 h) has passed, the
// kubelet's refresh rule.
func (m *Manager) tokenFile(ctx context.Context, pod *corev1.Pod, b *fileSet, vol string, src *corev1.ServiceAccountTokenProjection, def uint32) error {
	key := vol + "/" + src.Path
	m.mu.Lock()
	cached := m.tokens[key]
	m.mu.Unlock()
	now := m.cfg.Clock.Now()
	if cached == nil || now.After(cached.refresh) {
		if m.cfg.Client == nil {
			return fmt.Errorf("service account token: the node has no API client")
		}
		exp := int64(3600)
		if src.ExpirationSeconds != nil {
			exp = *src.ExpirationSeconds
		}
		var aud []string
		if src.Audience != "" {
			aud = []string{src.Audience}
		}
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences:         aud,
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}
		var tr *authv1.TokenRequest
		err := authzlag.Retry(authzlag.Backoff, func() (err error) {
			tr, err = m.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("request token for service account %s/%s: %w", pod.Namespace, sa, err)
		}
		issued := now
		ttl := tr.Status.ExpirationTimestamp.Sub(issued)
		refresh := issued.Add(min(ttl*8/10, 24*time.Hour))
		cached = &cachedToken{token: tr.Status.Token, refresh: refresh}
		m.mu.Lock()
		m.tokens[key] = cached
		m.mu.Unlock()
	}
	return b.add(src.Path, []byte(cached.token), def)
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}
