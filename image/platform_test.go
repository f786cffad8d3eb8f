package image

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestSelectManifest(t *testing.T) {
	desc := func(hex, platform string) v1.Descriptor {
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			t.Fatal(err)
		}
		return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(hex, 64)}, Platform: p}
	}
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{
		desc("1", "linux/amd64"),
		desc("2", "linux/arm/v7"),
		desc("3", "linux/arm64/v8"),
		desc("4", "unknown/unknown"),
		desc("5", "linux/amd64/v3"),
	}}
	tests := []struct {
		want    string
		pick    string
		wantErr bool
	}{
		{want: "linux/amd64", pick: "1"},
		{want: "linux/amd64/v3", pick: "5"},
		{want: "linux/arm64", pick: "3"}, // v8 is arm64's default variant
		{want: "linux/arm", pick: "2"},   // no variant asked: any
		{want: "linux/arm/v6", wantErr: true},
		{want: "linux/riscv64", wantErr: true},
		{want: "windows/amd64", wantErr: true},
	}
	for _, tt := range tests {
		p, err := ParsePlatform(tt.want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := selectManifest(idx, p)
		if tt.wantErr {
			if !errors.Is(err, ErrNoPlatform) {
				t.Errorf("%s: want ErrNoPlatform, got %v", tt.want, err)
			} else if !strings.Contains(err.Error(), "linux/amd64, linux/arm/v7, linux/arm64/v8, linux/amd64/v3") {
				t.Errorf("%s: error does not list the offered platforms: %v", tt.want, err)
			}
			continue
		}
		if err != nil || got.Digest.Hex[0:1] != tt.pick {
			t.Errorf("%s: picked %s (%v), want %s", tt.want, got.Digest.Hex, err, tt.pick)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]Platform{
		"linux/amd64":    {OS: "linux", Architecture: "amd64"},
		"linux/arm64/v8": {OS: "linux", Architecture: "arm64", Variant: "v8"},
	} {
		got, err := ParsePlatform(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParsePlatform(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q): want an error", bad)
		}
	}
}
