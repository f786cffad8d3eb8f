package image

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// normalVariant folds variants that mean the same CPU: arm64 manifests are
// published both without a variant and as "v8" (containerd's platforms
// package treats them as equal too).
func normalVariant(arch, variant string) string {
	if arch == "arm64" && variant == "v8" {
		return ""
	}
	return variant
}

// selectManifest picks want's manifest from an index. An exact variant
// match wins; a request without variant falls back to any variant of the
// architecture. The error lists what the index offers.
func selectManifest(idx *v1.IndexManifest, want Platform) (v1.Descriptor, error) {
	wantVariant := normalVariant(want.Architecture, want.Variant)
	var anyVariant *v1.Descriptor
	for i, m := range idx.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if m.Platform.OS != want.OS || m.Platform.Architecture != want.Architecture {
			continue
		}
		if normalVariant(m.Platform.Architecture, m.Platform.Variant) == wantVariant {
			return m, nil
		}
		if want.Variant == "" && anyVariant == nil {
			anyVariant = &idx.Manifests[i]
		}
	}
	if anyVariant != nil {
		return *anyVariant, nil
	}
	return v1.Descriptor{}, fmt.Errorf("%w: want %s, index offers %s", ErrNoPlatform, want, strings.Join(offeredPlatforms(idx), ", "))
}

// offeredPlatforms lists the runnable platforms of an index; attestation
// manifests ("unknown/unknown") are left out.
func offeredPlatforms(idx *v1.IndexManifest) []string {
	var out []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue
		}
		p := Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, Variant: m.Platform.Variant}.String()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return []string{"nothing"}
	}
	return out
}
