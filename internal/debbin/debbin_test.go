package debbin

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ulikunitz/xz"
)

// arArchive writes members in the ar format of deb(5).
func arArchive(members ...[2][]byte) []byte {
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12s%-6s%-6s%-8s%-10d`\n", m[0], "0", "0", "0", "100644", len(m[1]))
		b.Write(m[1])
		if len(m[1])%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func dataTarXZ(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	var xb bytes.Buffer
	xw, err := xz.NewWriter(&xb)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(tb.Bytes())
	xw.Close()
	return xb.Bytes()
}

func serve(t *testing.T, body []byte) (string, *atomic.Int64) {
	hits := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/pool/b/busybox-static.deb", hits
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestCachedFetchesOnceAndExtracts(t *testing.T) {
	deb := arArchive(
		[2][]byte{[]byte("debian-binary"), []byte("2.0\n")},
		[2][]byte{[]byte("control.tar.xz"), dataTarXZ(t, map[string]string{"./control": "Package: x\n"})},
		[2][]byte{[]byte("data.tar.xz"), dataTarXZ(t, map[string]string{"./bin/busybox": "the busybox binary", "./usr/share/doc/x": "doc"})},
	)
	url, hits := serve(t, deb)
	pkg := Package{URL: url, SHA256: digest(deb), Member: "bin/busybox"}
	cache := t.TempDir()
	for i := 0; i < 2; i++ {
		p, err := Cached(context.Background(), nil, pkg, cache)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != "the busybox binary" {
			t.Fatalf("extracted %q (%v)", got, err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o755 {
			t.Fatalf("mode %v, want 0755", fi.Mode())
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1 (the second call uses the cache)", hits.Load())
	}
}

func TestFetchFailuresWriteNothing(t *testing.T) {
	good := arArchive([2][]byte{[]byte("data.tar.xz"), dataTarXZ(t, map[string]string{"./bin/busybox": "x"})})
	for _, tc := range []struct {
		name string
		deb  []byte
		pkg  func(url string, deb []byte) Package
		want string
	}{
		{"checksum mismatch", good, func(u string, deb []byte) Package {
			return Package{URL: u, SHA256: digest([]byte("other")), Member: "bin/busybox"}
		}, "pinned"},
		{"member missing", good, func(u string, deb []byte) Package {
			return Package{URL: u, SHA256: digest(deb), Member: "bin/sh"}
		}, "no bin/sh in the package"},
		{"not a deb", []byte("<html>moved</html>"), func(u string, deb []byte) Package {
			return Package{URL: u, SHA256: digest(deb), Member: "bin/busybox"}
		}, "not a Debian package"},
		{"no data archive", arArchive([2][]byte{[]byte("debian-binary"), []byte("2.0\n")}), func(u string, deb []byte) Package {
			return Package{URL: u, SHA256: digest(deb), Member: "bin/busybox"}
		}, "no data.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := serve(t, tc.deb)
			dst := filepath.Join(t.TempDir(), "out", "busybox")
			err := Fetch(context.Background(), nil, tc.pkg(url, tc.deb), dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Dir(dst)); !os.IsNotExist(err) {
				t.Fatalf("a failed fetch created %s", filepath.Dir(dst))
			}
		})
	}
}

func TestPinsAreWellFormed(t *testing.T) {
	for arch, p := range BusyboxStatic {
		if !strings.HasPrefix(p.URL, "https://deb.debian.org/") || !strings.HasSuffix(p.URL, "_"+arch+".deb") {
			t.Errorf("%s: url %s", arch, p.URL)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			t.Errorf("%s: sha256 %q", arch, p.SHA256)
		}
	}
}
