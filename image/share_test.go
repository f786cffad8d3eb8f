package image_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// corruptBlob flips one byte in the body of GETs of one blob, keeping the
// length, as a broken proxy or disk would.
func corruptBlob(digest string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestPullDigestMismatchStoresNothing(t *testing.T) {
	bb := imagetest.Busybox(t)
	layer := blobDigests(t, bb)[1]
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(corruptBlob(layer)))
	ref := reg.Push(t, "corrupt:1", bb)
	s, root := openStore(t)

	_, err := s.Pull(context.Background(), ref, image.PullOptions{})
	if !errors.Is(err, image.ErrDigestMismatch) || !strings.Contains(err.Error(), layer) {
		t.Fatalf("want ErrDigestMismatch naming %s, got %v", layer, err)
	}
	if _, err := os.Stat(filepath.Join(root, "images", "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt blob was stored (stat: %v)", err)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "images", "ingest")); len(left) != 0 {
		t.Errorf("temp files left in ingest/: %v", left)
	}
	if _, err := s.Get(context.Background(), ref); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("ref recorded after a failed pull: %v", err)
	}
}

func TestConcurrentPullsShareDownloads(t *testing.T) {
	const pullers = 6
	gate := newBlobGate(pullers)
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(gate.middleware))
	bb := imagetest.AppendFiles(t, imagetest.Busybox(t), imagetest.Regular("etc/extra", 0o644, "second layer"))
	ref := reg.Push(t, "shared:1", bb)
	reg.ResetHits()
	s, _ := openStore(t)

	var wg sync.WaitGroup
	errs := make(chan error, pullers)
	for range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := s.Pull(context.Background(), ref, image.PullOptions{})
			if err == nil && img.Digest != digestOf(t, bb) {
				err = errors.New("wrong digest " + img.Digest)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, d := range blobDigests(t, bb) {
		if n := reg.BlobGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times by %d concurrent pulls, want once", d, n, pullers)
		}
	}
}

// TestPullsAcrossProcessesShareDownloads re-executes this test binary as
// several pullers on one store root: the per-blob flock must keep them
// from downloading a blob twice.
func TestPullsAcrossProcessesShareDownloads(t *testing.T) {
	const procs = 3
	gate := newBlobGate(procs)
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(gate.middleware))
	bb := imagetest.AppendFiles(t, imagetest.Busybox(t), imagetest.Regular("etc/extra", 0o644, "second layer"))
	ref := reg.Push(t, "xproc:1", bb)
	reg.ResetHits()
	root := t.TempDir()

	runHelpers(t, "pull", root, ref, procs)

	for _, d := range blobDigests(t, bb) {
		if n := reg.BlobGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times by %d processes, want once", d, n, procs)
		}
	}
	s, err := image.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if img, err := s.Get(context.Background(), ref); err != nil || img.Digest != digestOf(t, bb) {
		t.Fatalf("Get after cross-process pulls: %v %v", img, err)
	}
}

// runHelpers starts n copies of this test binary in helper mode at once and
// waits for all of them.
func runHelpers(t *testing.T, mode, root, ref string, n int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range n {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperRootEnv+"="+root, helperRefEnv+"="+ref)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
}
