package imagetest_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

type entry struct {
	hdr  *tar.Header
	data []byte
}

// flatten applies the image's layers (whiteouts included) the way a
// runtime sees them.
func flatten(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read flattened image: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(hdr.Name, "/")] = entry{hdr, data}
	}
	// Extract reports its own errors only after a valid end-of-archive
	// (see notes/environment.md): drain to the real end.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("flatten image: %v", err)
	}
	return out
}

func TestBusyboxImage(t *testing.T) {
	img := imagetest.Busybox(t)
	files := flatten(t, img)

	bb, ok := files["bin/busybox"]
	if !ok || bb.hdr.Mode&0o111 == 0 || len(bb.data) < 100_000 {
		t.Fatalf("bin/busybox missing or not executable: %+v", bb.hdr)
	}
	for _, p := range []string{"bin/sh", "bin/ls", "usr/bin/env", "sbin/ip"} {
		e, ok := files[p]
		if !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "/bin/busybox" {
			t.Errorf("%s: want symlink to /bin/busybox, got %+v", p, e.hdr)
		}
	}
	if tmp := files["tmp"]; tmp.hdr == nil || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode != 0o1777 {
		t.Errorf("tmp: want dir 1777, got %+v", tmp.hdr)
	}
	if home := files["home/user"]; home.hdr == nil || home.hdr.Uid != 1000 || home.hdr.Gid != 1000 {
		t.Errorf("home/user: want owned by 1000:1000, got %+v", home.hdr)
	}
	if root := files["root"]; root.hdr == nil || root.hdr.Typeflag != tar.TypeDir {
		t.Errorf("root: want directory, got %+v", root.hdr)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "user:x:1000:1000:user:/home/user:/bin/sh\n") ||
		!strings.HasPrefix(string(files["etc/passwd"].data), "root:x:0:0:") {
		t.Errorf("etc/passwd: %q", files["etc/passwd"].data)
	}
	if !strings.Contains(string(files["etc/group"].data), "user:x:1000:") {
		t.Errorf("etc/group: %q", files["etc/group"].data)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.Config.Env) != 1 || cf.Config.Env[0] != "PATH=/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("config: cmd %q env %q", cf.Config.Cmd, cf.Config.Env)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("config platform %s/%s", cf.OS, cf.Architecture)
	}

	// The binary in the layer really runs, without any library.
	bin := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bin, bb.data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "sh", "-c", "echo hello from $0").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from sh" {
		t.Fatalf("run busybox from the layer: %v: %q", err, out)
	}
}

// TestBusyboxFor: an image for another architecture, its applets given
// (a Mac builds linux/arm64 and linux/amd64 ones it cannot run).
func TestBusyboxFor(t *testing.T) {
	img, err := imagetest.BusyboxFor([]byte("not run here"), "arm64", []string{"bin/sh", "usr/sbin/httpd"})
	if err != nil {
		t.Fatal(err)
	}
	files := flatten(t, img)
	for _, p := range []string{"bin/sh", "usr/sbin/httpd"} {
		if e := files[p]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "/bin/busybox" {
			t.Errorf("%s: want symlink to /bin/busybox, got %+v", p, e.hdr)
		}
	}
	if string(files["bin/busybox"].data) != "not run here" || files["etc/passwd"].hdr == nil {
		t.Errorf("bin/busybox %q, etc/passwd %+v", files["bin/busybox"].data, files["etc/passwd"].hdr)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || strings.Join(cf.Config.Cmd, " ") != "sh" {
		t.Errorf("platform %s/%s, cmd %q", cf.OS, cf.Architecture, cf.Config.Cmd)
	}
}

func TestBusyboxIsDeterministic(t *testing.T) {
	a, err := imagetest.BuildBusybox(context.Background(), imagetest.DefaultCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := imagetest.BuildBusybox(context.Background(), imagetest.DefaultCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("two builds differ: %s vs %s", da, db)
	}
}

func TestVariants(t *testing.T) {
	base := imagetest.Busybox(t)
	img := imagetest.AppendFiles(t, base,
		imagetest.Whiteout("etc/group"),
		imagetest.OpaqueWhiteout("home"),
		imagetest.Dir("home/other", 0o750),
		imagetest.Regular("srv/hello.txt", 0o600, "hi\n"),
		imagetest.Hardlink("srv/again.txt", "srv/hello.txt"),
	)
	img = imagetest.WithConfig(t, img, func(c *v1.Config) {
		c.Entrypoint = []string{"/bin/echo"}
		c.Cmd = []string{"x"}
		c.WorkingDir = "/srv"
		c.User = "1000:1000"
		c.Env = append(c.Env, "GREETING=hi")
	})
	files := flatten(t, img)
	if _, ok := files["etc/group"]; ok {
		t.Error("etc/group survived its whiteout")
	}
	if _, ok := files["home/user"]; ok {
		t.Error("home/user survived the opaque whiteout of home")
	}
	if e := files["home/other"]; e.hdr == nil || e.hdr.Mode != 0o750 {
		t.Errorf("home/other: %+v", e.hdr)
	}
	if string(files["srv/hello.txt"].data) != "hi\n" {
		t.Errorf("srv/hello.txt: %q", files["srv/hello.txt"].data)
	}
	if e := files["srv/again.txt"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "srv/hello.txt" {
		t.Errorf("srv/again.txt: %+v", e.hdr)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.Entrypoint[0] != "/bin/echo" || c.WorkingDir != "/srv" || c.User != "1000:1000" || c.Env[len(c.Env)-1] != "GREETING=hi" {
		t.Errorf("config not applied: %+v", c)
	}
	if got := imagetest.PlatformOf(t, imagetest.WithPlatform(t, base, "linux/arm64/v8")); got != "linux/arm64/v8" {
		t.Errorf("WithPlatform: %s", got)
	}
}

func TestRegistryServesPushedImages(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	img := imagetest.Busybox(t)
	ref := reg.Push(t, "library/busybox:1", img)

	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	reg.ResetHits()
	got, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if _, err := got.Layers(); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled %s, pushed %s", d, want)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, err := remote.Layer(r.Context().Digest(ld.String()))
	if err != nil {
		t.Fatal(err)
	}
	body, err := rc.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, body)
	body.Close()
	if n := reg.BlobGets(ld.String()); n != 1 {
		t.Errorf("BlobGets(%s) = %d, want 1", ld, n)
	}

	idx := imagetest.Index(t, img, imagetest.WithPlatform(t, img, "linux/riscv64"))
	idxRef := reg.PushIndexT(t, "multi:1", idx)
	ri, err := name.ParseReference(idxRef)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ri)
	if err != nil || !desc.MediaType.IsIndex() {
		t.Fatalf("get index: %v %v", desc, err)
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.WithBasicAuth("alice", "s3cret"))
	ref := reg.Push(t, "private:1", imagetest.Busybox(t)) // Push authenticates itself
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	var terr *transport.Error
	if _, err := remote.Get(r); !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous get: want 401, got %v", err)
	}
	if _, err := remote.Get(r, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatalf("authenticated get: %v", err)
	}
}

func TestLayerModes(t *testing.T) {
	raw, err := imagetest.Tar([]imagetest.File{
		imagetest.Dir("d", 0o755|fs.ModeSetgid),
		{Path: "d/suid", Mode: 0o755 | fs.ModeSetuid, Data: []byte("x")},
		imagetest.Symlink("d/link", "suid"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(strings.NewReader(string(raw)))
	want := []struct {
		name string
		mode int64
		typ  byte
	}{{"d/", 0o2755, tar.TypeDir}, {"d/suid", 0o4755, tar.TypeReg}, {"d/link", 0o777, tar.TypeSymlink}}
	for _, w := range want {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name != w.name || hdr.Mode != w.mode || hdr.Typeflag != w.typ || !hdr.ModTime.Equal(imagetest.Epoch) {
			t.Errorf("entry %s: got %s mode %o type %c mtime %v", w.name, hdr.Name, hdr.Mode, hdr.Typeflag, hdr.ModTime)
		}
	}
}
