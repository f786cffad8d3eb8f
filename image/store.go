package image

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/renameio/v2"
)

// RootfsBuilder writes the flattened layers into a new ext4 file at dst.
// The default is rootfs.Build.
type RootfsBuilder func(ctx context.Context, layers []v1.Layer, dst string) error

// Store is the on-disk image store. It is safe for concurrent use, also by
// several processes sharing one root.
type Store struct {
	dir      string // <root>/images
	platform Platform
	insecure map[string]bool
	keychain authn.Keychain
	build    RootfsBuilder
	log      *slog.Logger
	rt       *registryTransport

	pulls  flightGroup[struct{}]
	blobs  flightGroup[struct{}]
	rootfs flightGroup[string]
}

// Option configures a Store.
type Option func(*Store) error

// WithInsecureRegistries lets the store reach these registries (host[:port],
// exactly as in image references) over plain HTTP or TLS without
// verification. Loopback registries need no entry.
func WithInsecureRegistries(hosts ...string) Option {
	return func(s *Store) error {
		for _, h := range hosts {
			if h == "" {
				return fmt.Errorf("empty insecure registry")
			}
			s.insecure[h] = true
		}
		return nil
	}
}

// WithPlatform sets the platform pulled when PullOptions.Platform is empty.
func WithPlatform(p Platform) Option {
	return func(s *Store) error { s.platform = p; return nil }
}

// WithKeychain replaces the node's credentials source (default: the Docker
// config file, $DOCKER_CONFIG/config.json or ~/.docker/config.json). Nil
// disables it.
func WithKeychain(k authn.Keychain) Option {
	return func(s *Store) error { s.keychain = k; return nil }
}

// WithRootfsBuilder replaces rootfs.Build (tests; other filesystem formats).
func WithRootfsBuilder(b RootfsBuilder) Option {
	return func(s *Store) error { s.build = b; return nil }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) error { s.log = l; return nil }
}

// Open opens (creating if needed) the store under root/images.
func Open(root string, opts ...Option) (*Store, error) {
	s := &Store{
		dir:      filepath.Join(root, "images"),
		platform: DefaultPlatform(),
		insecure: map[string]bool{},
		keychain: authn.DefaultKeychain,
		log:      slog.Default(),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", root, err)
		}
	}
	if s.build == nil {
		s.build = buildRootfs(s.log)
	}
	s.rt = newRegistryTransport(s.insecure)
	for _, d := range []string{s.blobDir(), s.rootfsDir(), s.ingestDir(), s.lockDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	layout := filepath.Join(s.dir, "oci-layout")
	if _, err := os.Stat(layout); os.IsNotExist(err) {
		// https://github.com/opencontainers/image-spec/blob/main/image-layout.md#oci-layout-file
		if err := writeFileAtomic(layout, []byte(`{"imageLayoutVersion":"1.0.0"}`), s.ingestDir()); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	return s, nil
}

// Dir is the store's directory (<root>/images), an OCI image layout.
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobDir() string   { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Store) rootfsDir() string { return filepath.Join(s.dir, "rootfs") }
func (s *Store) ingestDir() string { return filepath.Join(s.dir, "ingest") }
func (s *Store) lockDir() string   { return filepath.Join(s.dir, "locks") }
func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

func (s *Store) blobPath(h v1.Hash) string { return filepath.Join(s.blobDir(), h.Hex) }

// RootfsPath is where an image's rootfs lives once built.
func (s *Store) RootfsPath(img *Image) (string, error) {
	h, err := sha256Hash(img.Digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.rootfsDir(), h.Hex+".ext4"), nil
}

// lockGC takes the store-wide lock: shared by pulls and rootfs builds,
// exclusive for Prune, so Prune never deletes what is being written.
// writeFileAtomic replaces path with data through a temp file in tmpDir
// (fsynced, then renamed), so readers see the old or the new content.
func writeFileAtomic(path string, data []byte, tmpDir string) error {
	if err := renameio.WriteFile(path, data, 0o644, renameio.WithTempDir(tmpDir), renameio.WithStaticPermissions(0o644)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (s *Store) lockGC(ctx context.Context, exclusive bool) (func(), error) {
	return lockFile(ctx, filepath.Join(s.lockDir(), "gc.lock"), exclusive)
}
