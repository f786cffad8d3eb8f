package image

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Get returns a stored image without contacting any registry (for
// imagePullPolicy IfNotPresent and Never). ref may be a tag or a digest
// reference; a digest matches the platform manifest or the repo digest.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("get image %s: %w", ref, err)
	}
	entries, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !entryMatches(e, r) {
			continue
		}
		img, err := s.imageFromEntry(e)
		if err != nil {
			return nil, fmt.Errorf("get image %s: %w", r.Name(), err)
		}
		if _, isDigest := r.(name.Digest); isDigest {
			img.Ref = r.Name()
		}
		return img, nil
	}
	return nil, fmt.Errorf("get image %s: %w", r.Name(), ErrNotFound)
}

// entryMatches: the same ref, or for a digest reference, an entry of the
// same repository with that manifest or repo digest.
func entryMatches(e indexEntry, r name.Reference) bool {
	if e.Ref == r.Name() {
		return true
	}
	d, ok := r.(name.Digest)
	if !ok {
		return false
	}
	er, err := name.ParseReference(e.Ref)
	if err != nil || er.Context().Name() != d.Context().Name() {
		return false
	}
	return d.DigestStr() == e.Manifest.Digest.String() || d.DigestStr() == e.RepoDigest
}

// List returns the stored images, sorted by ref. Entries whose blobs are
// gone are left out (and logged).
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	entries, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(entries))
	for _, e := range entries {
		img, err := s.imageFromEntry(e)
		if err != nil {
			s.log.WarnContext(ctx, "skipping broken image entry", "ref", e.Ref, "err", err)
			continue
		}
		out = append(out, img)
	}
	return out, nil
}

// Remove drops a ref (tag, or digest reference as Get matches it). The
// content stays until Prune.
func (s *Store) Remove(ctx context.Context, ref string) error {
	r, err := ParseReference(ref)
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	err = s.updateIndex(ctx, func(entries []indexEntry) ([]indexEntry, error) {
		kept := slices.DeleteFunc(entries, func(e indexEntry) bool { return entryMatches(e, r) })
		if len(kept) == len(entries) {
			return nil, ErrNotFound
		}
		return kept, nil
	})
	if err != nil {
		return fmt.Errorf("remove image %s: %w", r.Name(), err)
	}
	return nil
}

// imageFromEntry assembles an Image from its stored manifest and config,
// checking that every layer blob is present.
func (s *Store) imageFromEntry(e indexEntry) (*Image, error) {
	raw, err := s.readBlob(e.Manifest.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest missing: %w", ErrNotFound, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", e.Manifest.Digest, err)
	}
	rawConfig, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: config missing: %w", ErrNotFound, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
	}
	img := &Image{
		Ref:          e.Ref,
		Digest:       e.Manifest.Digest.String(),
		RepoDigest:   e.RepoDigest,
		ConfigDigest: m.Config.Digest.String(),
		Platform:     Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
		Size:         int64(len(raw)) + m.Config.Size,
		Created:      cfg.Created.Time,
		Pulled:       e.Pulled,
		Config:       runtimeConfig(cfg.Config),
	}
	if img.RepoDigest == "" {
		img.RepoDigest = img.Digest
	}
	for _, l := range m.Layers {
		if !s.hasBlob(l.Digest, l.Size) {
			return nil, fmt.Errorf("%w: layer %s missing", ErrNotFound, l.Digest)
		}
		img.Layers = append(img.Layers, Descriptor{MediaType: string(l.MediaType), Digest: l.Digest.String(), Size: l.Size})
		img.Size += l.Size
	}
	return img, nil
}

func runtimeConfig(c v1.Config) Config {
	out := Config{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
		Labels:     c.Labels,
		StopSignal: c.StopSignal,
	}
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = slices.Sorted(maps.Keys(c.ExposedPorts))
	}
	return out
}
