package image_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vk-applevm/vk-applevm/image"
)

// Environment of the helper process the cross-process tests re-exec this
// test binary as.
const (
	helperEnv     = "VKAV_IMAGE_TEST_HELPER" // "pull" or "rootfs"
	helperRootEnv = "VKAV_IMAGE_TEST_ROOT"
	helperRefEnv  = "VKAV_IMAGE_TEST_REF"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// runHelper pulls (and for "rootfs" also builds the rootfs of) one image in
// a separate process sharing the store root with the test.
func runHelper(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []image.Option{}
	if mode == "rootfs" {
		opts = append(opts, image.WithRootfsBuilder(countingBuilder(filepath.Join(os.Getenv(helperRootEnv), "builds"))))
	}
	s, err := image.Open(os.Getenv(helperRootEnv), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	img, err := s.Pull(ctx, os.Getenv(helperRefEnv), image.PullOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "rootfs" {
		if _, err := s.Rootfs(ctx, img); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func openStore(t *testing.T, opts ...image.Option) (*image.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := image.Open(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// blobDigests are the config and layer digests of img.
func blobDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// blobGate holds blob GETs until n manifest GETs have arrived, so n
// concurrent pullers are all past resolving the tag before any blob is
// served: without sharing, each would then download every blob.
type blobGate struct {
	n         int
	mu        sync.Mutex
	manifests int
	open      chan struct{}
}

func newBlobGate(n int) *blobGate { return &blobGate{n: n, open: make(chan struct{})} }

func (g *blobGate) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/"):
			g.mu.Lock()
			g.manifests++
			if g.manifests == g.n {
				close(g.open)
			}
			g.mu.Unlock()
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			select {
			case <-g.open:
			case <-time.After(30 * time.Second):
				http.Error(w, "blob gate: fewer manifest GETs than pullers", http.StatusInternalServerError)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
