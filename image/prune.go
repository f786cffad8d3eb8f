package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxManifestSize bounds the blobs Prune parses when looking for manifests;
// registries reject larger manifests (distribution's limit is 4 MiB).
const maxManifestSize = 4 << 20

// Prune deletes blobs and rootfs files that no ref and no running container
// uses. inUse gets manifest digests ("sha256:<hex>") and says whether a
// container still runs from that image; a nil inUse means none does. Pulls
// and rootfs builds wait while Prune runs.
func (s *Store) Prune(ctx context.Context, inUse func(digest string) bool) (PruneReport, error) {
	var report PruneReport
	unlock, err := s.lockGC(ctx, true)
	if err != nil {
		return report, fmt.Errorf("prune: %w", err)
	}
	defer unlock()

	keep, err := s.liveBlobs(inUse)
	if err != nil {
		return report, fmt.Errorf("prune: %w", err)
	}
	blobs, err := os.ReadDir(s.blobDir())
	if err != nil {
		return report, fmt.Errorf("prune: %w", err)
	}
	for _, b := range blobs {
		digest := "sha256:" + b.Name()
		if keep[digest] {
			continue
		}
		if err := s.removeCounted(filepath.Join(s.blobDir(), b.Name()), &report); err != nil {
			return report, err
		}
		report.Blobs = append(report.Blobs, digest)
	}
	rootfs, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		return report, fmt.Errorf("prune: %w", err)
	}
	for _, f := range rootfs {
		hexDigest, ok := strings.CutSuffix(f.Name(), ".ext4")
		// Hidden files are builds that died (no build runs during Prune).
		if ok && !strings.HasPrefix(f.Name(), ".") && keep["sha256:"+hexDigest] {
			continue
		}
		if err := s.removeCounted(filepath.Join(s.rootfsDir(), f.Name()), &report); err != nil {
			return report, err
		}
		report.Rootfs = append(report.Rootfs, f.Name())
	}
	// Leftovers of interrupted downloads, and per-digest lock files: nobody
	// holds those while we hold the gc lock exclusively.
	if err := s.removeStale(s.ingestDir(), func(string) bool { return true }, &report); err != nil {
		return report, err
	}
	perDigestLock := func(n string) bool { return strings.HasPrefix(n, "blob-") || strings.HasPrefix(n, "rootfs-") }
	if err := s.removeStale(s.lockDir(), perDigestLock, &report); err != nil {
		return report, err
	}
	s.log.InfoContext(ctx, "pruned image store", "blobs", len(report.Blobs), "rootfs", len(report.Rootfs), "bytesFreed", report.BytesFreed)
	return report, nil
}

// liveBlobs is the set of digests to keep: every ref's manifest and repo
// digest, every stored manifest inUse says is running, and the config and
// layers of those manifests.
func (s *Store) liveBlobs(inUse func(string) bool) (map[string]bool, error) {
	entries, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var roots []string
	for _, e := range entries {
		roots = append(roots, e.Manifest.Digest.String())
		keep[e.RepoDigest] = true
	}
	if inUse != nil {
		manifests, err := s.storedManifests()
		if err != nil {
			return nil, err
		}
		for d := range manifests {
			if inUse(d) {
				roots = append(roots, d)
			}
		}
	}
	for _, d := range roots {
		keep[d] = true
		h, err := sha256Hash(d)
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(s.blobPath(h))
		if err != nil {
			continue // nothing stored to protect
		}
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", d, err)
		}
		keep[m.Config.Digest.String()] = true
		for _, l := range m.Layers {
			keep[l.Digest.String()] = true
		}
	}
	return keep, nil
}

// storedManifests finds the image manifests among the blobs: small JSON
// documents with a config and layers.
func (s *Store) storedManifests() (map[string]bool, error) {
	blobs, err := os.ReadDir(s.blobDir())
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, b := range blobs {
		info, err := b.Info()
		if err != nil || info.Size() > maxManifestSize {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.blobDir(), b.Name()))
		if err != nil || len(raw) == 0 || raw[0] != '{' {
			continue
		}
		var probe struct {
			Config *json.RawMessage `json:"config"`
			Layers *json.RawMessage `json:"layers"`
		}
		if json.Unmarshal(raw, &probe) == nil && probe.Config != nil && probe.Layers != nil {
			out["sha256:"+b.Name()] = true
		}
	}
	return out, nil
}

func (s *Store) removeCounted(path string, report *PruneReport) error {
	if fi, err := os.Lstat(path); err == nil {
		report.BytesFreed += fi.Size()
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("prune %s: %w", path, err)
	}
	return nil
}

func (s *Store) removeStale(dir string, match func(name string) bool, report *PruneReport) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	for _, f := range slices.DeleteFunc(files, func(f os.DirEntry) bool { return !match(f.Name()) }) {
		if err := s.removeCounted(filepath.Join(dir, f.Name()), report); err != nil {
			return err
		}
	}
	return nil
}
