// Package imagetest builds real OCI test images (a busybox image from
// Debian's busybox-static, and variants of it) and serves them from a real
// registry (go-containerregistry's pkg/registry) on a listener of the
// caller's choice. Everything it builds is deterministic: the same inputs
// give the same digests on every run.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the modification time of every file and the creation time of
// every config imagetest writes; fixed so digests are stable.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one entry of a test layer.
type File struct {
	// Path is relative to the root ("etc/passwd").
	Path string
	// Mode holds the permission bits and the type: 0 type bits is a regular
	// file, fs.ModeDir a directory, fs.ModeSymlink a symlink. Zero means 0644.
	Mode fs.FileMode
	Data []byte
	// Link is a symlink's target, or for Hardlink the path linked to.
	Link     string
	hardlink bool
	UID, GID int
}

// Regular is a regular file.
func Regular(p string, perm fs.FileMode, data string) File {
	return File{Path: p, Mode: perm, Data: []byte(data)}
}

// Dir is a directory.
func Dir(p string, perm fs.FileMode) File {
	return File{Path: p, Mode: fs.ModeDir | perm}
}

// Symlink is a symbolic link to target.
func Symlink(p, target string) File {
	return File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: target}
}

// Hardlink is a hard link to another path of the same layer.
func Hardlink(p, target string) File {
	return File{Path: p, Link: target, hardlink: true}
}

// Whiteout deletes p from the layers below (OCI image-spec layer.md).
func Whiteout(p string) File {
	return File{Path: path.Join(path.Dir(p), ".wh."+path.Base(p)), Mode: 0o644}
}

// OpaqueWhiteout hides everything below dir in the layers below.
func OpaqueWhiteout(dir string) File {
	return File{Path: path.Join(dir, ".wh..wh..opq"), Mode: 0o644}
}

// Tar writes files as an uncompressed tar stream in the given order.
func Tar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    f.Path,
			Mode:    int64(f.Mode.Perm()),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: Epoch,
			Format:  tar.FormatPAX,
		}
		if hdr.Mode == 0 && f.Mode&fs.ModeType == 0 && !f.hardlink {
			hdr.Mode = 0o644
		}
		if f.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if f.Mode&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if f.Mode&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		switch {
		case f.hardlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, f.Link
		case f.Mode&fs.ModeDir != 0:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Link
		case f.Mode&fs.ModeType == 0:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
		default:
			return nil, fmt.Errorf("tar %s: unsupported mode %v", f.Path, f.Mode)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// Layer makes a gzip-compressed OCI layer of files.
func Layer(files []File) (v1.Layer, error) {
	raw, err := Tar(files)
	if err != nil {
		return nil, err
	}
	return LayerFromTar(raw)
}

// LayerFromTar makes a gzip-compressed OCI layer of an uncompressed tar
// stream (for layers Tar cannot express, such as unsafe paths).
func LayerFromTar(raw []byte) (v1.Layer, error) {
	// Compress once here: go-containerregistry would recompress on every
	// read (digest, push, each pull of an in-memory image).
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // no name or mtime in the header: deterministic
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	return l, nil
}
