package imagetest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NewImage makes an OCI image for linux on the host's architecture from
// layers (base first) and a runtime config.
func NewImage(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = cfg
	// AppendLayers recorded one history entry per layer with the zero time.
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: Epoch}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// WithConfig returns img with its runtime config changed by edit (for
// images with a given Entrypoint, Cmd, WorkingDir, User, Env...).
func WithConfig(t testing.TB, img v1.Image, edit func(*v1.Config)) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("read config: %v", err)
	}
	cf = cf.DeepCopy()
	edit(&cf.Config)
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("set config: %v", err)
	}
	return out
}

// WithPlatform returns img claiming another platform ("linux/arm64"): for
// multi-platform indexes in tests. The layers stay what they are.
func WithPlatform(t testing.TB, img v1.Image, platform string) v1.Image {
	t.Helper()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatalf("parse platform %q: %v", platform, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("read config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("set config: %v", err)
	}
	return out
}

// AppendFiles returns img with one more layer holding files (whiteouts
// included: see Whiteout and OpaqueWhiteout).
func AppendFiles(t testing.TB, img v1.Image, files ...File) v1.Image {
	t.Helper()
	layer, err := Layer(files)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	out, err := mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "imagetest.AppendFiles"},
	})
	if err != nil {
		t.Fatalf("append layer: %v", err)
	}
	return out
}

// Index makes a multi-platform OCI index of images; each entry's platform
// comes from its config (see WithPlatform).
func Index(t testing.TB, images ...v1.Image) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatalf("read config: %v", err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	return mutate.AppendManifests(idx, adds...)
}

// PlatformOf is a config's "os/arch[/variant]".
func PlatformOf(t testing.TB, img v1.Image) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("read config: %v", err)
	}
	return strings.TrimSuffix(cf.OS+"/"+cf.Architecture+"/"+cf.Variant, "/")
}
