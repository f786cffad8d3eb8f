package image

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Image is one image in the store: a platform-specific manifest and what
// the runtime needs from its config.
type Image struct {
	// Ref is the normalised reference the image was pulled by, e.g.
	// index.docker.io/library/busybox:latest or ...@sha256:<hex>.
	Ref string `json:"ref"`
	// Digest is the platform-specific manifest digest ("sha256:<hex>"): the
	// image's identity here (rootfs files are keyed by it) and what a
	// kubelet-style imageID names.
	Digest string `json:"digest"`
	// RepoDigest is the digest the registry served for Ref: the index digest
	// for multi-platform images, else equal to Digest. containerd reports
	// repo@RepoDigest as the pod's imageID; either digest pulls this image.
	RepoDigest string `json:"repoDigest"`
	// ConfigDigest is the digest of the image config blob.
	ConfigDigest string `json:"configDigest"`
	// Platform the manifest is for.
	Platform Platform `json:"platform"`
	// Size is the bytes stored for the image: manifest, config and the
	// (compressed) layers.
	Size int64 `json:"size"`
	// Layers are the layer blobs, base layer first.
	Layers []Descriptor `json:"layers"`
	// Config is the part of the OCI image config a container starts from.
	Config Config `json:"config"`
	// Created is the config's creation time (zero when absent).
	Created time.Time `json:"created,omitzero"`
	// Pulled is when this ref was last pulled into the store.
	Pulled time.Time `json:"pulled,omitzero"`
}

// Repository is Ref without its tag or digest.
func (img *Image) Repository() string {
	if i := strings.LastIndex(img.Ref, "@"); i >= 0 {
		return img.Ref[:i]
	}
	slash := strings.LastIndex(img.Ref, "/")
	if i := strings.LastIndex(img.Ref, ":"); i > slash {
		return img.Ref[:i]
	}
	return img.Ref
}

// DigestRef is repository@RepoDigest: pulling it yields this image again.
func (img *Image) DigestRef() string {
	return img.Repository() + "@" + img.RepoDigest
}

// Config is the runtime part of an OCI image config
// (https://github.com/opencontainers/image-spec/blob/main/config.md).
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	// ExposedPorts are "port/proto" keys, sorted.
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
}

// Descriptor names one blob.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Platform is an OS/architecture[/variant] triple as in image indexes.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// DefaultPlatform is linux on the host's architecture: the guest runs the
// host's instruction set (linux/amd64 on Apple silicon needs Rosetta and is
// asked for explicitly).
func DefaultPlatform() Platform {
	return Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// ParsePlatform reads "os/arch[/variant]".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("parse platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// PruneReport says what Prune deleted.
type PruneReport struct {
	// Blobs are the digests of the deleted blobs.
	Blobs []string `json:"blobs,omitempty"`
	// Rootfs are the deleted rootfs files.
	Rootfs []string `json:"rootfs,omitempty"`
	// BytesFreed is the sum of the deleted files' sizes.
	BytesFreed int64 `json:"bytesFreed"`
}
