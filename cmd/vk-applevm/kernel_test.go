package main

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/guest/kernelfetch"
)

const testMember = "opt/kata/share/kata-containers/vmlinux-6.18.35-197"

// testKernel is a minimal arm64 Image (Documentation/arch/arm64/booting.rst:
// "ARM\x64" at offset 56) with the version banner a real one carries.
func testKernel(seed byte) []byte {
	b := make([]byte, 64<<10)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[56:], 0x644d5241)
	for i := 64; i < len(b); i++ {
		b[i] = byte(i) ^ seed
	}
	copy(b[1024:], "Linux version 6.18.35-197 (builder@host) #1 SMP\x00")
	return b
}

// kataArchive is laid out like Kata's static release: a .tar.zst with
// "./"-prefixed members and the kernel among other files.
func kataArchive(t *testing.T, kernel []byte) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range []struct {
		name string
		body []byte
	}{
		{"./opt/kata/bin/kata-runtime", []byte("#!/bin/false\n")},
		{"./" + testMember, kernel},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return out.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// archiveServer serves body on 127.0.0.1 and counts requests.
func archiveServer(t *testing.T, body []byte) (url string, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/kata-static-arm64.tar.zst", hits
}

func writePin(t *testing.T, pin kernelfetch.Pin) string {
	t.Helper()
	data, err := json.Marshal(pin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kernel-pin.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var arm64Agent struct {
	once sync.Once
	path string
	err  error
}

// buildArm64Agent builds the real guest agent for linux/arm64, as `make
// agent` does, once per test run.
func buildArm64Agent(t *testing.T) string {
	t.Helper()
	arm64Agent.once.Do(func() {
		dir, err := os.MkdirTemp("", "vkav-kernel-test-")
		if err != nil {
			arm64Agent.err = err
			return
		}
		arm64Agent.path = filepath.Join(dir, "vk-applevm-agent-linux-arm64")
		args := append([]string{"build"}, guest.AgentBuildArgs("")...)
		cmd := exec.Command("go", append(args, "-o", arm64Agent.path, "github.com/vk-applevm/vk-applevm/cmd/vk-applevm-agent")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			arm64Agent.err = fmt.Errorf("go build the arm64 agent: %v\n%s", err, out)
		}
	})
	if arm64Agent.err != nil {
		t.Fatal(arm64Agent.err)
	}
	return arm64Agent.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if arm64Agent.path != "" {
		os.RemoveAll(filepath.Dir(arm64Agent.path))
	}
	os.Exit(code)
}

func fetchCmd(ctx context.Context, dir string, args ...string) error {
	g := &globals{guestDir: dir, log: slog.New(slog.DiscardHandler)}
	cmd := newKernelCommand(g)
	cmd.SetArgs(append([]string{"fetch"}, args...))
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	return cmd.ExecuteContext(ctx)
}

// cpioEntry is one member of a newc archive.
type cpioEntry struct {
	mode uint32
	data []byte
}

// readNewc parses a newc cpio archive (the kernel's initramfs format,
// Documentation/driver-api/early-userspace/buffer-format.rst).
func readNewc(t *testing.T, data []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	pad := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			t.Fatalf("initrd: no newc header at offset %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("initrd: header field %d at %d: %v", i, off, err)
			}
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(data[off+110 : off+110+nameSize-1])
		body := pad(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioEntry{mode: uint32(mode), data: data[body : body+size]}
		off = pad(body + size)
	}
}

func TestKernelFetchBuildsTheVZBundle(t *testing.T) {
	testenv.Needs(t, "builds of the arm64 guest agent and initrd (about two minutes)")
	agent := buildArm64Agent(t)
	kernel := testKernel(1)
	body := kataArchive(t, kernel)
	url, hits := archiveServer(t, body)
	pin := writePin(t, kernelfetch.Pin{URL: url, SHA256: sha(body), Member: testMember, MemberSHA256: sha(kernel)})
	dir := filepath.Join(t.TempDir(), "guest", "arm64")

	if err := fetchCmd(context.Background(), dir, "--pin", pin, "--agent", agent); err != nil {
		t.Fatalf("kernel fetch: %v", err)
	}
	b, err := guest.Find(dir)
	if err != nil {
		t.Fatalf("the bundle kernel fetch wrote is not usable: %v", err)
	}
	want := guest.Bundle{Arch: "arm64", Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd.img"), KernelRelease: "6.18.35-197"}
	if b != want {
		t.Fatalf("bundle %+v, want %+v", b, want)
	}
	if got, _ := os.ReadFile(b.Kernel); !bytes.Equal(got, kernel) {
		t.Fatalf("installed kernel differs from the archive member")
	}
	initrd, err := os.ReadFile(b.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, initrd)
	agentBytes, _ := os.ReadFile(agent)
	if e, ok := entries["init"]; !ok || !bytes.Equal(e.data, agentBytes) || e.mode&0o777 != 0o755 {
		t.Fatalf("initrd /init is not the agent (present %v, %d bytes, mode %o)", ok, len(e.data), e.mode)
	}
	if e, ok := entries["lib/vkav/modules.list"]; !ok || len(e.data) != 0 {
		t.Fatalf("modules.list: present %v, content %q; want an empty list (virtio is built into the kernel)", ok, e.data)
	}
	if _, ok := entries["dev/console"]; !ok {
		t.Fatalf("initrd lacks dev/console: %v", entries)
	}

	// Again, as after `make agent`: the kernel matches the pin and is not
	// downloaded; the initrd is rebuilt.
	os.Remove(b.Initrd)
	if err := fetchCmd(context.Background(), dir, "--pin", pin, "--agent", agent); err != nil {
		t.Fatalf("second kernel fetch: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1: the installed kernel matched the pin", hits.Load())
	}
	if _, err := guest.Find(dir); err != nil {
		t.Fatalf("after the second fetch: %v", err)
	}
	// --force downloads anyway.
	if err := fetchCmd(context.Background(), dir, "--pin", pin, "--agent", agent, "--force"); err != nil || hits.Load() != 2 {
		t.Fatalf("forced fetch: %v after %d downloads, want a second download", err, hits.Load())
	}
}

// A corrupted or changed download fails with a clear message and installs
// nothing: an earlier bundle stays exactly as it was, and no temporary file
// is left behind.
func TestKernelFetchBadChecksumInstallsNothing(t *testing.T) {
	testenv.Needs(t, "builds of the arm64 guest agent and initrd (about two minutes)")
	agent := buildArm64Agent(t)
	dir := filepath.Join(t.TempDir(), "arm64")

	// First a fresh directory.
	body := kataArchive(t, testKernel(2))
	url, _ := archiveServer(t, body)
	badPin := writePin(t, kernelfetch.Pin{URL: url, SHA256: sha([]byte("another release")), Member: testMember})
	err := fetchCmd(context.Background(), dir, "--pin", badPin, "--agent", agent)
	if err == nil || !strings.Contains(err.Error(), "does not match the pinned") || !strings.Contains(err.Error(), "nothing installed") {
		t.Fatalf("fetch with a wrong checksum: %v, want a checksum mismatch saying nothing was installed", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("a failed fetch left %v in the bundle directory", names)
	}

	// Then over a working bundle.
	good := testKernel(3)
	goodBody := kataArchive(t, good)
	goodURL, _ := archiveServer(t, goodBody)
	goodPin := writePin(t, kernelfetch.Pin{URL: goodURL, SHA256: sha(goodBody), Member: testMember})
	if err := fetchCmd(context.Background(), dir, "--pin", goodPin, "--agent", agent); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if err := fetchCmd(context.Background(), dir, "--pin", badPin, "--agent", agent, "--force"); err == nil {
		t.Fatal("fetch with a wrong checksum over a bundle succeeded")
	}
	if after := snapshot(t, dir); !equalSnapshots(before, after) {
		t.Fatalf("a failed fetch changed the bundle: before %v, after %v", keys(before), keys(after))
	}
}

// Local mistakes are reported before anything is downloaded.
func TestKernelFetchChecksBeforeDownloading(t *testing.T) {
	testenv.Needs(t, "builds of the arm64 guest agent and initrd (about two minutes)")
	agent := buildArm64Agent(t)
	body := kataArchive(t, testKernel(4))
	url, hits := archiveServer(t, body)
	pin := writePin(t, kernelfetch.Pin{URL: url, SHA256: sha(body), Member: testMember})
	amd64Bundle := filepath.Join(t.TempDir(), "qemu-bundle")
	os.MkdirAll(amd64Bundle, 0o755)
	os.WriteFile(filepath.Join(amd64Bundle, "bundle.json"), []byte(`{"arch":"amd64","kernel":"vmlinuz","initrd":"initrd.img","kernelRelease":"6.1.0-cloud-amd64"}`), 0o644)
	// The agent with e_machine (ELF header offset 18) made EM_X86_64.
	x86, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(x86[18:], 0x3e)

	for _, tc := range []struct {
		name string
		dir  string
		args []string
		want string
	}{
		{"no agent", filepath.Join(t.TempDir(), "arm64"), []string{"--agent", filepath.Join(t.TempDir(), "missing")}, "build it with `make agent`"},
		{"x86-64 agent", filepath.Join(t.TempDir(), "arm64"), []string{"--agent", writeTemp(t, string(x86))}, "is for EM_X86_64, not linux/arm64"},
		{"agent not an ELF", filepath.Join(t.TempDir(), "arm64"), []string{"--agent", writeTemp(t, "#!/bin/sh\n")}, "guest agent"},
		{"QEMU's bundle directory", amd64Bundle, []string{"--agent", agent}, "holds an amd64 guest bundle"},
		{"directory named amd64", filepath.Join(t.TempDir(), "guest", "amd64"), []string{"--agent", agent}, "pass --guest"},
		{"bad pin file", filepath.Join(t.TempDir(), "arm64"), []string{"--agent", agent, "--pin", writeTemp(t, `{"url":"ftp://x"}`)}, "invalid kernel pin"},
		{"unknown argument", filepath.Join(t.TempDir(), "arm64"), []string{"--agent", agent, "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fetchCmd(context.Background(), tc.dir, append([]string{"--pin", pin}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("%d downloads despite local errors", hits.Load())
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// snapshot maps every file name in dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range dirNames(t, dir) {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out[n] = string(b)
	}
	return out
}

func equalSnapshots(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
