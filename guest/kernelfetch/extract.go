package kernelfetch

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Leading bytes of the compression formats release archives use.
var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}         // RFC 8878, 3.1.1
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00} // xz file format 1.0.4, 2.1.1.1
	gzipMagic = []byte{0x1f, 0x8b}                     // RFC 1952, 2.3.1
)

// maxCandidates bounds the list of kernel-like members a not-found error
// names.
const maxCandidates = 8

// extractMember finds member in the (verified) archive and writes it to a
// temporary file in dir, returning its path, SHA-256 and size.
func extractMember(ctx context.Context, archive, member, dir string) (tmp, sum string, size int64, err error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", "", 0, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	stream, closeStream, err := decompress(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return "", "", 0, err
	}
	defer closeStream()

	want := memberName(member)
	var candidates []string
	tr := tar.NewReader(stream)
	for {
		if err := ctx.Err(); err != nil {
			return "", "", 0, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", "", 0, fmt.Errorf("read archive: %w", err)
		}
		name := memberName(hdr.Name)
		if name != want {
			if strings.Contains(filepath.Base(name), "vmlinu") && len(candidates) < maxCandidates {
				candidates = append(candidates, name)
			}
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeSymlink, tar.TypeLink:
			return "", "", 0, fmt.Errorf("member %s is a link to %s; pin the file it points to", want, hdr.Linkname)
		default:
			return "", "", 0, fmt.Errorf("member %s is not a regular file (tar type %q)", want, hdr.Typeflag)
		}
		return writeTemp(dir, tr)
	}
	if len(candidates) > 0 {
		return "", "", 0, fmt.Errorf("archive has no member %s (kernel-like members: %s)", want, strings.Join(candidates, ", "))
	}
	return "", "", 0, fmt.Errorf("archive has no member %s", want)
}

// decompress picks the decoder by the stream's leading bytes; anything else
// is read as a plain tar.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	head, err := r.Peek(len(xzMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read archive: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("open zstd stream: %w", err)
		}
		return d, d.Close, nil
	case bytes.HasPrefix(head, xzMagic):
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("open xz stream: %w", err)
		}
		return d, func() {}, nil
	case bytes.HasPrefix(head, gzipMagic):
		d, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("open gzip stream: %w", err)
		}
		return d, func() { d.Close() }, nil
	}
	return r, func() {}, nil
}

// writeTemp copies r into a new temporary file in dir, synced to disk, and
// returns its path, SHA-256 and size. The file is removed on error.
func writeTemp(dir string, r io.Reader) (path, sum string, size int64, err error) {
	f, err := os.CreateTemp(dir, ".kernel-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("create temporary kernel: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	hash := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, hash), r)
	if err != nil {
		return "", "", 0, fmt.Errorf("write temporary kernel: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return "", "", 0, fmt.Errorf("chmod temporary kernel: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("sync temporary kernel: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("close temporary kernel: %w", err)
	}
	return f.Name(), hex.EncodeToString(hash.Sum(nil)), size, nil
}

// commit renames tmp over dst and syncs the directory, so after a crash
// dst is either the old kernel or the new one, never a partial file.
func commit(tmp, dst string) error {
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install kernel: %w", err)
	}
	d, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return fmt.Errorf("sync bundle directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync bundle directory: %w", err)
	}
	return nil
}

// fileSHA256 hashes an existing file.
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	hash := sha256.New()
	n, err := io.Copy(hash, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(hash.Sum(nil)), n, nil
}
