package vmruntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/image"
	corev1 "k8s.io/api/core/v1"
)

// Adapter presents a container.Runtime as a Runtime.
type Adapter struct {
	Runtime *container.Runtime
	// Mirrors maps a registry host (as normalised, e.g. index.docker.io)
	// to the host[:port] that serves its content, like containerd's
	// registry mirrors; the pod keeps the image name it asked for.
	Mirrors map[string]string
	// HypervisorCheck, when set, adds the hypervisor's health to the
	// runtime's.
	HypervisorCheck func(context.Context) error
}

var _ Runtime = (*Adapter)(nil)

// mirrored rewrites ref to its mirror, if any.
func (a *Adapter) mirrored(ref string) (string, error) {
	if len(a.Mirrors) == 0 {
		return ref, nil
	}
	r, err := image.ParseReference(ref)
	if err != nil {
		return "", err
	}
	reg := r.Context().RegistryStr()
	m, ok := a.Mirrors[reg]
	if !ok {
		return ref, nil
	}
	return m + strings.TrimPrefix(r.Name(), reg), nil
}

// EnsureImage applies the pull policy.
func (a *Adapter) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, secrets []image.PullSecret, pulling func()) (ImageInfo, error) {
	store := a.Runtime.Images()
	ref, err := a.mirrored(ref)
	if err != nil {
		return ImageInfo{}, err
	}
	if policy != corev1.PullAlways {
		img, err := store.Get(ctx, ref)
		switch {
		case err == nil:
			return imageInfo(img, false), nil
		case !errors.Is(err, image.ErrNotFound):
			return ImageInfo{}, err
		case policy == corev1.PullNever:
			return ImageInfo{}, ErrNeverPull
		}
	}
	if pulling != nil {
		pulling()
	}
	start := time.Now()
	img, err := store.Pull(ctx, ref, image.PullOptions{PullSecrets: secrets})
	if err != nil {
		return ImageInfo{}, err
	}
	info := imageInfo(img, true)
	info.PullDuration = time.Since(start)
	return info, nil
}

func imageInfo(img *image.Image, pulled bool) ImageInfo {
	return ImageInfo{
		Ref: img.Ref, ID: img.DigestRef(), Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd,
		Env: img.Config.Env, WorkingDir: img.Config.WorkingDir, User: img.Config.User, Pulled: pulled, Size: img.Size,
	}
}

// CreateVM boots a VM; the image ref goes through the mirrors as in
// EnsureImage.
func (a *Adapter) CreateVM(ctx context.Context, cfg container.VMConfig) (VM, error) {
	ref, err := a.mirrored(cfg.ImageRef)
	if err != nil {
		return nil, err
	}
	cfg.ImageRef = ref
	return a.Runtime.Create(ctx, cfg)
}

// VMs lists the runtime's VMs.
func (a *Adapter) VMs(ctx context.Context) ([]VM, error) {
	sbs, err := a.Runtime.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]VM, len(sbs))
	for i, sb := range sbs {
		out[i] = sb
	}
	return out, nil
}

// Check adds the hypervisor's health to the runtime's.
func (a *Adapter) Check(ctx context.Context) error {
	if a.HypervisorCheck != nil {
		if err := a.HypervisorCheck(ctx); err != nil {
			return fmt.Errorf("hypervisor: %w", err)
		}
	}
	return a.Runtime.Check(ctx)
}
