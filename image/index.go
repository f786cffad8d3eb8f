package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on index.json descriptors. The ref name key is the OCI one
// (image-spec annotations.md), holding the full normalised reference as
// containerd's exports do; the others are ours.
const (
	annotationRef          = "org.opencontainers.image.ref.name"
	annotationConfigDigest = "io.github.vk-applevm.image.config.digest"
	annotationRepoDigest   = "io.github.vk-applevm.image.repo.digest"
	annotationPulled       = "io.github.vk-applevm.image.pulled"
)

// indexEntry is one ref in index.json.
type indexEntry struct {
	Ref          string
	Manifest     v1.Descriptor
	ConfigDigest string
	RepoDigest   string
	Pulled       time.Time
}

func (e indexEntry) descriptor() v1.Descriptor {
	d := e.Manifest
	d.Annotations = map[string]string{
		annotationRef:          e.Ref,
		annotationConfigDigest: e.ConfigDigest,
		annotationRepoDigest:   e.RepoDigest,
		annotationPulled:       e.Pulled.UTC().Format(time.RFC3339Nano),
	}
	return d
}

func entryFromDescriptor(d v1.Descriptor) indexEntry {
	e := indexEntry{
		Ref:          d.Annotations[annotationRef],
		ConfigDigest: d.Annotations[annotationConfigDigest],
		RepoDigest:   d.Annotations[annotationRepoDigest],
	}
	e.Pulled, _ = time.Parse(time.RFC3339Nano, d.Annotations[annotationPulled])
	d.Annotations = nil
	e.Manifest = d
	return e
}

// readIndex reads index.json; a missing file is an empty index. Writers
// replace the file by rename, so reading needs no lock.
func (s *Store) readIndex() ([]indexEntry, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("parse image index %s: %w", s.indexPath(), err)
	}
	entries := make([]indexEntry, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		if d.Annotations[annotationRef] == "" {
			continue // not one of ours (someone else wrote into the layout)
		}
		entries = append(entries, entryFromDescriptor(d))
	}
	return entries, nil
}

// updateIndex applies change to the index under the index lock, so
// concurrent pulls and removes in several processes do not lose updates.
func (s *Store) updateIndex(ctx context.Context, change func([]indexEntry) ([]indexEntry, error)) error {
	unlock, err := lockFile(ctx, filepath.Join(s.lockDir(), "index.lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := s.readIndex()
	if err != nil {
		return err
	}
	entries, err = change(entries)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Ref < entries[j].Ref })
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: make([]v1.Descriptor, 0, len(entries))}
	for _, e := range entries {
		idx.Manifests = append(idx.Manifests, e.descriptor())
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	return writeFileAtomic(s.indexPath(), b, s.ingestDir())
}

// putRef records ref → image, replacing an earlier entry for the ref.
func (s *Store) putRef(ctx context.Context, e indexEntry) error {
	return s.updateIndex(ctx, func(entries []indexEntry) ([]indexEntry, error) {
		out := entries[:0]
		for _, old := range entries {
			if old.Ref != e.Ref {
				out = append(out, old)
			}
		}
		return append(out, e), nil
	})
}
