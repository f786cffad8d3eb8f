// Package debbin takes one file out of a pinned Debian package: how the
// macOS end-to-end suite and mac-check (hack/maccheck) get static busybox
// binaries for linux/arm64 (the guest) and linux/amd64 (through Rosetta),
// which a Mac can neither install nor run itself. On Linux both use the
// installed busybox-static.
//
// The package's SHA-256 is checked before the archive is parsed; the file is
// written atomically, so a cached copy is always complete.
package debbin

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Package is one .deb and the file wanted from it.
type Package struct {
	URL    string
	SHA256 string
	// Member is the file's path in the package's data archive, e.g.
	// "bin/busybox".
	Member string
}

// BusyboxStatic is Debian 12's busybox-static (1:1.35.0-4+deb12u1+b1), per
// architecture; hashes from the bookworm Packages indexes.
var BusyboxStatic = map[string]Package{
	"arm64": {
		URL:    "https://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb",
		SHA256: "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5",
		Member: "bin/busybox",
	},
	"amd64": {
		URL:    "https://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb",
		SHA256: "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744",
		Member: "bin/busybox",
	},
}

// maxDebBytes bounds a download; busybox-static is under 1 MB.
const maxDebBytes = 64 << 20

// Cached returns pkg's member from cacheDir, fetching it first if absent.
func Cached(ctx context.Context, client *http.Client, pkg Package, cacheDir string) (string, error) {
	dst := filepath.Join(cacheDir, pkg.SHA256[:16], path.Base(pkg.Member))
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := Fetch(ctx, client, pkg, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// Fetch downloads pkg, checks its SHA-256 and writes its member to dst
// (mode 0755).
func Fetch(ctx context.Context, client *http.Client, pkg Package, dst string) error {
	if client == nil {
		client = http.DefaultClient
	}
	deb, err := download(ctx, client, pkg)
	if err != nil {
		return err
	}
	data, err := dataArchive(deb)
	if err != nil {
		return fmt.Errorf("%s: %w", pkg.URL, err)
	}
	body, err := member(data, pkg.Member)
	if err != nil {
		return fmt.Errorf("%s: %w", pkg.URL, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(body)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

func download(ctx context.Context, client *http.Client, pkg Package) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pkg.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", pkg.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download %s: %s (a newer Debian point release may have replaced it; update debbin's pin)", pkg.URL, resp.Status)
	}
	deb, err := io.ReadAll(io.LimitReader(resp.Body, maxDebBytes+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", pkg.URL, err)
	}
	if len(deb) > maxDebBytes {
		return nil, fmt.Errorf("download %s: larger than %d bytes", pkg.URL, maxDebBytes)
	}
	sum := sha256.Sum256(deb)
	if got := hex.EncodeToString(sum[:]); got != pkg.SHA256 {
		return nil, fmt.Errorf("download %s: sha256 %s, pinned %s", pkg.URL, got, pkg.SHA256)
	}
	return deb, nil
}

// dataArchive returns the decompressed data.tar of a .deb: an ar archive
// (deb(5): "!<arch>\n", then 60-byte member headers, bodies padded to an
// even length) holding debian-binary, control.tar.* and data.tar.*.
func dataArchive(deb []byte) (io.Reader, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(deb, []byte(magic)) {
		return nil, errors.New("not a Debian package (no ar header)")
	}
	for off := len(magic); off+60 <= len(deb); {
		hdr := deb[off : off+60]
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil || size < 0 || off+60+size > len(deb) {
			return nil, fmt.Errorf("ar member %q: bad size %q", name, hdr[48:58])
		}
		body := deb[off+60 : off+60+size]
		off += 60 + size + size%2
		switch name {
		case "data.tar":
			return bytes.NewReader(body), nil
		case "data.tar.xz":
			return xz.NewReader(bytes.NewReader(body))
		case "data.tar.gz":
			return gzip.NewReader(bytes.NewReader(body))
		case "data.tar.zst":
			d, err := zstd.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		}
	}
	return nil, errors.New("no data.tar member")
}

func member(data io.Reader, want string) ([]byte, error) {
	tr := tar.NewReader(bufio.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no %s in the package", want)
		}
		if err != nil {
			return nil, fmt.Errorf("read data archive: %w", err)
		}
		if strings.TrimPrefix(path.Clean(hdr.Name), "./") != want {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s is not a regular file in the package", want)
		}
		return io.ReadAll(tr)
	}
}
