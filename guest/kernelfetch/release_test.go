package kernelfetch

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKernelRelease(t *testing.T) {
	banner := "Linux version 6.18.35-197 (kata@builder) (gcc 13) #1 SMP\n"
	cases := []struct {
		name string
		at   int // offset of the banner; -1 for none
		want string
	}{
		{"early", 4096, "6.18.35-197"},
		// Straddles the first chunk boundary.
		{"across chunks", releaseScanChunk - 20, "6.18.35-197"},
		{"late", 3*releaseScanChunk + 7, "6.18.35-197"},
		{"none", -1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := arm64Image(4*releaseScanChunk, 9)
			if tc.at >= 0 {
				copy(img[tc.at:], banner)
			}
			path := filepath.Join(t.TempDir(), "Image")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := kernelRelease(path)
			if err != nil || got != tc.want {
				t.Errorf("kernelRelease = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
