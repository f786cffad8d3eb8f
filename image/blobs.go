package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Progress reports one blob of a pull. It is sent while the blob downloads
// (at most every progressStep bytes) and once when it is complete.
type Progress struct {
	Digest  string
	Size    int64
	Written int64
	// Cached: the blob was already in the store; nothing was downloaded.
	Cached bool
	Done   bool
}

// progressStep bounds how often a download reports progress.
const progressStep = 1 << 20

// sha256Hash parses a digest, accepting only sha256: the store's blob
// directory is blobs/sha256, and a valid hex part keeps paths safe.
func sha256Hash(digest string) (v1.Hash, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parse digest %q: %w", digest, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, fmt.Errorf("digest %s: %w: only sha256 is supported", digest, ErrUnsupported)
	}
	return h, nil
}

// hasBlob says whether a complete blob is stored. Blobs only appear by
// rename after verification, so presence with the right size is enough.
func (s *Store) hasBlob(h v1.Hash, size int64) bool {
	fi, err := os.Stat(s.blobPath(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// readBlob reads a small stored blob (manifest, config).
func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	return b, nil
}

// putBlobBytes stores in-memory content (manifests) after checking it
// hashes to h.
func (s *Store) putBlobBytes(h v1.Hash, data []byte) error {
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != h.Hex {
		return fmt.Errorf("store blob %s: %w: content hashes to sha256:%x", h, ErrDigestMismatch, got)
	}
	if s.hasBlob(h, int64(len(data))) {
		return nil
	}
	return s.ingest(h, int64(len(data)), bytes.NewReader(data), nil)
}

// ensureBlob makes sure a blob is stored, downloading it with open if not.
// Concurrent calls for one digest share a download in this process, and a
// flock per digest keeps other processes from downloading it again.
func (s *Store) ensureBlob(ctx context.Context, desc v1.Descriptor, open func(context.Context) (io.ReadCloser, error), progress func(Progress)) error {
	report := func(p Progress) {
		if progress != nil {
			progress(p)
		}
	}
	if s.hasBlob(desc.Digest, desc.Size) {
		report(Progress{Digest: desc.Digest.String(), Size: desc.Size, Written: desc.Size, Cached: true, Done: true})
		return nil
	}
	_, err := s.blobs.do(ctx, desc.Digest.String(), func(ctx context.Context) (struct{}, error) {
		unlock, err := lockFile(ctx, filepath.Join(s.lockDir(), "blob-"+desc.Digest.Hex+".lock"), true)
		if err != nil {
			return struct{}{}, err
		}
		defer unlock()
		if s.hasBlob(desc.Digest, desc.Size) { // another process fetched it meanwhile
			return struct{}{}, nil
		}
		rc, err := open(ctx)
		if err != nil {
			return struct{}{}, fmt.Errorf("fetch blob %s: %w", desc.Digest, err)
		}
		defer rc.Close()
		report(Progress{Digest: desc.Digest.String(), Size: desc.Size}) // the download starts
		return struct{}{}, s.ingest(desc.Digest, desc.Size, rc, report)
	})
	if err != nil {
		return err
	}
	report(Progress{Digest: desc.Digest.String(), Size: desc.Size, Written: desc.Size, Done: true})
	return nil
}

// ingest copies r into a temp file while hashing it and renames the file
// into blobs/ only when size and digest match; otherwise nothing is left.
func (s *Store) ingest(h v1.Hash, size int64, r io.Reader, report func(Progress)) error {
	f, err := os.CreateTemp(s.ingestDir(), h.Hex+".*")
	if err != nil {
		return fmt.Errorf("store blob %s: %w", h, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	defer f.Close()

	hash := sha256.New()
	w := &progressWriter{digest: h.String(), size: size, report: report}
	// One byte more than announced tells an oversized blob from an exact one.
	n, copyErr := io.Copy(io.MultiWriter(f, hash, w), io.LimitReader(r, size+1))
	got := "sha256:" + hex.EncodeToString(hash.Sum(nil))
	switch {
	case n == size && got != h.String():
		return fmt.Errorf("store blob %s: %w: content hashes to %s (%v)", h, ErrDigestMismatch, got, copyErr)
	case copyErr != nil:
		return fmt.Errorf("download blob %s: %w", h, copyErr)
	case n != size:
		return fmt.Errorf("store blob %s: %w: got %d bytes or more, want %d", h, ErrDigestMismatch, n, size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("store blob %s: sync: %w", h, err)
	}
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("store blob %s: %w", h, err)
	}
	if err := os.Rename(f.Name(), s.blobPath(h)); err != nil {
		return fmt.Errorf("store blob %s: %w", h, err)
	}
	return nil
}

type progressWriter struct {
	digest         string
	size, written  int64
	lastReportedAt int64
	report         func(Progress)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.written += int64(len(p))
	if w.report != nil && w.written-w.lastReportedAt >= progressStep {
		w.lastReportedAt = w.written
		w.report(Progress{Digest: w.digest, Size: w.size, Written: w.written})
	}
	return len(p), nil
}
