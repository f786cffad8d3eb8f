package kernelfetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vk-applevm/vk-applevm/vm/vz/kernelformat"
)

const kernelMember = "opt/kata/share/kata-containers/vmlinux-6.18.35-197"

// arm64Image returns bytes with an arm64 Image header (booting.rst: magic
// "ARM\x64" at offset 56) and a body that differs per seed.
func arm64Image(size int, seed byte) []byte {
	b := make([]byte, size)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[56:], 0x644d5241)
	for i := 64; i < len(b); i++ {
		b[i] = byte(i) ^ seed
	}
	return b
}

// withBanner adds the kernel's version banner, as a real Image has.
func withBanner(img []byte, release string) []byte {
	copy(img[1024:], "Linux version "+release+" (builder@host) #1 SMP\x00")
	return img
}

type entry struct {
	name     string
	body     []byte
	typeflag byte
	linkname string
}

// kataLike is laid out like Kata's static archive: "./"-prefixed members,
// directories, the versioned kernel and a vmlinux.container symlink to it.
func kataLike(kernel []byte) []entry {
	return []entry{
		{name: "./opt/", typeflag: tar.TypeDir},
		{name: "./opt/kata/bin/kata-runtime", body: []byte("#!/bin/false\n")},
		{name: "./opt/kata/share/kata-containers/", typeflag: tar.TypeDir},
		{name: "./" + kernelMember, body: kernel},
		{name: "./opt/kata/share/kata-containers/vmlinux.container", typeflag: tar.TypeSymlink, linkname: "vmlinux-6.18.35-197"},
	}
}

func archive(t *testing.T, format string, entries []entry) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typeflag, Linkname: e.linkname}
		if e.typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size, hdr.Mode = 0, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch format {
	case "tar":
		return tarBuf.Bytes()
	case "tar.gz":
		w = gzip.NewWriter(&out)
	case "tar.zst":
		zw, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case "tar.xz":
		xw, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w = xw
	default:
		t.Fatalf("unknown format %s", format)
	}
	if _, err := w.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server serves body at /kata.tar.* on 127.0.0.1 and counts requests.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func serve(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func serveBytes(t *testing.T, body []byte) *server {
	return serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
}

// assertNothingInstalled checks that dir holds exactly the files in keep
// (no kernel, no leftover temporary files).
func assertDirHolds(t *testing.T, dir string, keep ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != strings.Join(keep, ",") {
		t.Errorf("bundle dir holds %v, want %v", names, keep)
	}
}

func TestFetchInstallsPinnedKernel(t *testing.T) {
	kernel := withBanner(arm64Image(64<<10, 1), "6.18.35-197")
	for _, format := range []string{"tar.zst", "tar.xz", "tar.gz", "tar"} {
		t.Run(format, func(t *testing.T) {
			body := archive(t, format, kataLike(kernel))
			srv := serveBytes(t, body)
			dir := filepath.Join(t.TempDir(), "guest")
			var progressed int64
			res, err := Fetch(context.Background(), Options{
				Dir:      dir,
				Pin:      Pin{URL: srv.URL + "/kata." + format, SHA256: sha(body), Member: kernelMember, MemberSHA256: sha(kernel)},
				Progress: func(done, total int64) { progressed = done },
			})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			got, err := os.ReadFile(filepath.Join(dir, DefaultName))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, kernel) {
				t.Fatalf("installed kernel differs from the archive member (%d vs %d bytes)", len(got), len(kernel))
			}
			if res.Path != filepath.Join(dir, DefaultName) || res.SHA256 != sha(kernel) || res.Size != int64(len(kernel)) ||
				res.KernelRelease != "6.18.35-197" || res.Cached {
				t.Errorf("unexpected result %+v", res)
			}
			if progressed != int64(len(body)) {
				t.Errorf("progress reached %d bytes, want %d", progressed, len(body))
			}
			assertDirHolds(t, dir, DefaultName)
		})
	}
}

func TestFetchSkipsDownloadWhenInstalledKernelMatches(t *testing.T) {
	kernel := withBanner(arm64Image(8<<10, 2), "6.1.0-test")
	body := archive(t, "tar.zst", kataLike(kernel))
	srv := serveBytes(t, body)
	dir := t.TempDir()
	opts := Options{Dir: dir, Pin: Pin{URL: srv.URL + "/k.tar.zst", SHA256: sha(body), Member: kernelMember, MemberSHA256: sha(kernel)}}
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cached || srv.hits.Load() != 1 || res.KernelRelease != "6.1.0-test" {
		t.Errorf("second fetch: %+v after %d requests, want cached after 1", res, srv.hits.Load())
	}
	opts.Force = true
	if res, err = Fetch(context.Background(), opts); err != nil || res.Cached || srv.hits.Load() != 2 {
		t.Errorf("forced fetch: cached=%v, %d requests, err %v; want a second download", res.Cached, srv.hits.Load(), err)
	}
}

// Every failure leaves the bundle dir as it was: an older kernel intact and
// no temporary files.
func TestFetchFailuresInstallNothing(t *testing.T) {
	kernel := arm64Image(32<<10, 3)
	good := archive(t, "tar.zst", kataLike(kernel))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(kernel)
	zw.Close()

	cases := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		pin     func(url string) Pin
		max     int64
		wantErr string
		wantIs  error
	}{
		{
			name:    "sha256 mismatch",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(good) },
			pin: func(u string) Pin {
				return Pin{URL: u, SHA256: sha([]byte("another release")), Member: kernelMember}
			},
			wantErr: "does not match the pinned",
		},
		{
			name: "truncated download",
			handler: func(w http.ResponseWriter, r *http.Request) {
				// Promise the whole archive, send half, hang up.
				w.Header().Set("Content-Length", strconv.Itoa(len(good)))
				w.Write(good[:len(good)/2])
			},
			pin:     func(u string) Pin { return Pin{URL: u, SHA256: sha(good), Member: kernelMember} },
			wantErr: "unexpected EOF",
		},
		{
			name:    "missing member",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(good) },
			pin: func(u string) Pin {
				return Pin{URL: u, SHA256: sha(good), Member: "opt/kata/share/kata-containers/vmlinux-6.1.0-1"}
			},
			wantErr: "no member opt/kata/share/kata-containers/vmlinux-6.1.0-1 (kernel-like members: " + kernelMember,
		},
		{
			name:    "member is a symlink",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(good) },
			pin: func(u string) Pin {
				return Pin{URL: u, SHA256: sha(good), Member: "./opt/kata/share/kata-containers/vmlinux.container"}
			},
			wantErr: "is a link to vmlinux-6.18.35-197",
		},
		{
			name: "compressed kernel member",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(archive(t, "tar.zst", kataLike(gz.Bytes())))
			},
			pin: func(u string) Pin {
				return Pin{URL: u, SHA256: sha(archive(t, "tar.zst", kataLike(gz.Bytes()))), Member: kernelMember}
			},
			wantErr: "gzip-compressed",
			wantIs:  kernelformat.ErrNotArm64Image,
		},
		{
			name:    "member sha256 mismatch",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(good) },
			pin: func(u string) Pin {
				return Pin{URL: u, SHA256: sha(good), Member: kernelMember, MemberSHA256: sha([]byte("x"))}
			},
			wantErr: "the pin says",
		},
		{
			name:    "not found",
			handler: http.NotFound,
			pin:     func(u string) Pin { return Pin{URL: u, SHA256: sha(good), Member: kernelMember} },
			wantErr: "404 Not Found",
		},
		{
			name:    "larger than the limit",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(good) },
			pin:     func(u string) Pin { return Pin{URL: u, SHA256: sha(good), Member: kernelMember} },
			max:     16,
			wantErr: "exceeds the 16-byte limit",
		},
		{
			name: "larger than the limit without a length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush() // chunked: no Content-Length
				w.Write(good)
			},
			pin:     func(u string) Pin { return Pin{URL: u, SHA256: sha(good), Member: kernelMember} },
			max:     16,
			wantErr: "more than the 16-byte limit",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, tc.handler)
			dir := t.TempDir()
			old := []byte("the kernel installed before")
			if err := os.WriteFile(filepath.Join(dir, DefaultName), old, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Fetch(context.Background(), Options{Dir: dir, Pin: tc.pin(srv.URL + "/kata.tar.zst"), MaxArchiveBytes: tc.max})
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %v", err, tc.wantIs)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, DefaultName)); !bytes.Equal(got, old) {
				t.Errorf("the previously installed kernel was changed")
			}
			assertDirHolds(t, dir, DefaultName)
		})
	}
}

func TestFetchStopsWhenContextEnds(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Fetch(ctx, Options{Dir: dir, Pin: Pin{URL: srv.URL + "/k.tar.zst", SHA256: sha(nil), Member: kernelMember}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch under an expiring context: %v, want deadline exceeded", err)
	}
	assertDirHolds(t, dir)
}

func TestFetchLocalKernel(t *testing.T) {
	src := filepath.Join(t.TempDir(), "Image")
	kernel := arm64Image(16<<10, 4)
	if err := os.WriteFile(src, kernel, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res, err := Fetch(context.Background(), Options{Dir: dir, Kernel: src, Name: "Image-arm64"})
	if err != nil {
		t.Fatalf("Fetch --kernel: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "Image-arm64"))
	if err != nil || !bytes.Equal(got, kernel) || res.SHA256 != sha(kernel) || res.Source != src {
		t.Fatalf("local install: err %v, result %+v", err, res)
	}
	if fi, err := os.Stat(res.Path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("installed kernel mode: %v %v, want 0644", fi.Mode(), err)
	}
	assertDirHolds(t, dir, "Image-arm64")

	// A vmlinuz is refused before anything is copied.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(kernel)
	zw.Close()
	vmlinuz := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(vmlinuz, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Fetch(context.Background(), Options{Dir: dir, Kernel: vmlinuz, Name: "Image-arm64"})
	if !errors.Is(err, kernelformat.ErrNotArm64Image) {
		t.Fatalf("Fetch --kernel vmlinuz: %v, want ErrNotArm64Image", err)
	}
	if got, _ := os.ReadFile(res.Path); !bytes.Equal(got, kernel) {
		t.Errorf("refused kernel replaced the installed one")
	}
	assertDirHolds(t, dir, "Image-arm64")
}

// TestMain keeps Fetch's progress logging out of test output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}
