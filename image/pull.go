package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// PullOptions are per-pull settings.
type PullOptions struct {
	// Platform is "os/arch[/variant]"; empty means the store's platform.
	Platform string
	// Credentials, when set, are tried first.
	Credentials *Credentials
	// PullSecrets are the pod's imagePullSecrets, tried after Credentials
	// and before the node's Docker config.
	PullSecrets []PullSecret
	// Progress, when set, receives blob progress; it may be called from
	// several goroutines at once.
	Progress func(Progress)
}

const (
	userAgent = "vk-applevm"
	// maxConcurrentDownloads is Docker's default max-concurrent-downloads.
	maxConcurrentDownloads = 3
)

// Pull fetches ref from its registry into the store and records the ref.
// Blobs already stored are not downloaded again; concurrent pulls of one
// image share the downloads. Errors wrap ErrNotFound, ErrUnauthorized,
// ErrNoPlatform, ErrInvalidReference or ErrPlainHTTP where they apply,
// together with the registry's message.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	start := time.Now()
	r, err := s.parseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := s.pull(ctx, r, opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Name(), err)
	}
	s.log.InfoContext(ctx, "pulled image", "ref", img.Ref, "digest", img.Digest, "platform", img.Platform.String(),
		"size", img.Size, "duration", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func (s *Store) pull(ctx context.Context, r name.Reference, opts PullOptions) (*Image, error) {
	platform := s.platform
	if opts.Platform != "" {
		p, err := ParsePlatform(opts.Platform)
		if err != nil {
			return nil, err
		}
		platform = p
	}
	unlock, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()

	puller, top, err := s.resolve(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	manifest, err := s.platformManifest(ctx, puller, r, top, platform)
	if err != nil {
		return nil, err
	}
	_, err = s.pulls.do(ctx, manifest.Digest.String(), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.fetchImage(ctx, puller, r.Context(), manifest, opts.Progress)
	})
	if err != nil {
		return nil, err
	}
	entry := indexEntry{
		Ref:        r.Name(),
		Manifest:   manifest.Descriptor,
		RepoDigest: top.Digest.String(),
		Pulled:     time.Now(),
	}
	img, err := s.imageFromEntry(entry)
	if err != nil {
		return nil, err
	}
	if img.Platform.OS != "" && (img.Platform.OS != platform.OS || img.Platform.Architecture != platform.Architecture) {
		return nil, fmt.Errorf("%w: image is %s, want %s", ErrNoPlatform, img.Platform, platform)
	}
	entry.ConfigDigest = img.ConfigDigest
	entry.Manifest.Platform = &v1.Platform{OS: img.Platform.OS, Architecture: img.Platform.Architecture, Variant: img.Platform.Variant}
	if err := s.putRef(ctx, entry); err != nil {
		return nil, err
	}
	return img, nil
}

// resolve fetches the manifest (or index) ref names, trying each candidate
// credential until the registry accepts one. The returned puller keeps the
// accepted credential and its token for the blob downloads.
func (s *Store) resolve(ctx context.Context, r name.Reference, opts PullOptions) (*remote.Puller, *remote.Descriptor, error) {
	auths, err := s.authenticators(r.Context(), opts)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for _, auth := range auths {
		puller, err := remote.NewPuller(remote.WithAuth(auth), remote.WithTransport(s.rt), remote.WithUserAgent(userAgent), remote.WithContext(ctx))
		if err != nil {
			return nil, nil, fmt.Errorf("set up registry client: %w", err)
		}
		desc, err := puller.Get(ctx, r)
		if err == nil {
			return puller, desc, nil
		}
		lastErr = classify(err)
		if !errors.Is(lastErr, ErrUnauthorized) {
			break
		}
	}
	return nil, nil, lastErr
}

// classify prefixes a registry error with the sentinel error it means.
func classify(err error) error {
	if kind := registryErrorKind(err); kind != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return err
}

// platformManifest returns the image manifest for platform: top itself, or
// the entry picked from top when it is an index (the index is stored too,
// so the repo digest resolves locally).
func (s *Store) platformManifest(ctx context.Context, puller *remote.Puller, r name.Reference, top *remote.Descriptor, platform Platform) (*remote.Descriptor, error) {
	switch {
	case top.MediaType.IsImage():
		return top, nil
	case top.MediaType.IsIndex():
	default:
		return nil, fmt.Errorf("%w: media type %q", ErrUnsupported, top.MediaType)
	}
	if _, err := sha256Hash(top.Digest.String()); err != nil {
		return nil, err
	}
	if err := s.putBlobBytes(top.Digest, top.Manifest); err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(top.Manifest))
	if err != nil {
		return nil, fmt.Errorf("parse index %s: %w", top.Digest, err)
	}
	child, err := selectManifest(idx, platform)
	if err != nil {
		return nil, err
	}
	desc, err := puller.Get(ctx, r.Context().Digest(child.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s for %s: %w", child.Digest, platform, classify(err))
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: %s for %s has media type %q", ErrUnsupported, child.Digest, platform, desc.MediaType)
	}
	return desc, nil
}

// fetchImage stores a manifest and every blob it names.
func (s *Store) fetchImage(ctx context.Context, puller *remote.Puller, repo name.Repository, md *remote.Descriptor, progress func(Progress)) error {
	if _, err := sha256Hash(md.Digest.String()); err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(md.Manifest))
	if err != nil {
		return fmt.Errorf("parse manifest %s: %w", md.Digest, err)
	}
	blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
	for _, b := range blobs {
		if _, err := sha256Hash(b.Digest.String()); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConcurrentDownloads)
	for _, b := range blobs {
		g.Go(func() error {
			open := func(ctx context.Context) (io.ReadCloser, error) {
				l, err := puller.Layer(ctx, repo.Digest(b.Digest.String()))
				if err != nil {
					return nil, classify(err)
				}
				rc, err := l.Compressed()
				if err != nil {
					return nil, classify(err)
				}
				return rc, nil
			}
			return s.ensureBlob(gctx, b, open, progress)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// The manifest goes in last: a stored manifest means its blobs are too.
	return s.putBlobBytes(md.Digest, md.Manifest)
}
