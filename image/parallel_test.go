package image_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// TestSlowPullHoldsUpNoOtherImage: while one image's layer download
// hangs, another image is pulled, read and given its root filesystem.
// A store-wide lock held across downloads (the gc lock taken exclusively,
// the index lock held while fetching) would block the second image until
// the first is released, and fail the test.
func TestSlowPullHoldsUpNoOtherImage(t *testing.T) {
	slow := imagetest.AppendFiles(t, imagetest.Busybox(t), imagetest.Regular("etc/slow", 0o644, "the slow image's own layer"))
	fast := imagetest.AppendFiles(t, imagetest.Busybox(t), imagetest.Regular("etc/fast", 0o644, "the fast image's own layer"))
	slowLayers := blobDigests(t, slow)
	slowLayer := slowLayers[len(slowLayers)-1]
	held := make(chan struct{})
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+slowLayer) {
				select {
				case held <- struct{}{}:
				default:
				}
				<-release
			}
			next.ServeHTTP(w, r)
		})
	}))
	slowRef := reg.Push(t, "slow:1", slow)
	fastRef := reg.Push(t, "fast:1", fast)
	s, _ := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	slowDone := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctx, slowRef, image.PullOptions{})
		slowDone <- err
	}()
	select {
	case <-held:
	case err := <-slowDone:
		t.Fatalf("the slow pull ended before its layer was held: %v", err)
	case <-ctx.Done():
		t.Fatal("the slow pull never asked for its layer")
	}

	fastDone := make(chan error, 1)
	go func() {
		img, err := s.Pull(ctx, fastRef, image.PullOptions{})
		if err == nil {
			_, err = s.Get(ctx, fastRef)
		}
		if err == nil {
			_, err = s.Rootfs(ctx, img)
		}
		fastDone <- err
	}()
	select {
	case err := <-fastDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pulling another image waited for the held download")
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow pull finished while its layer was held: %v", err)
	default:
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
}
