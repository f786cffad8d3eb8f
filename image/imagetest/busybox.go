package imagetest

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// BusyboxHint says how to provide the busybox binary.
const BusyboxHint = "install Debian's static busybox: apt-get install -y busybox-static"

// busyboxCandidates are where busybox-static installs its binary (Debian
// 12 uses /bin, later releases /usr/bin); the dynamic "busybox" package
// uses the same paths, hence the static check.
var busyboxCandidates = []string{"/bin/busybox", "/usr/bin/busybox"}

// debBusyboxPaths are the same paths inside an unpacked busybox-static .deb.
var debBusyboxPaths = []string{"bin/busybox", "usr/bin/busybox"}

// PATH of the busybox image: Docker's default for Linux containers.
const busyboxPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

var busyboxCache struct {
	sync.Mutex
	img v1.Image
}

// Busybox returns the busybox test image for the host's architecture,
// building it once per process. It fails the test with a hint when no
// static busybox can be found or fetched.
func Busybox(t testing.TB) v1.Image {
	t.Helper()
	busyboxCache.Lock()
	defer busyboxCache.Unlock()
	if busyboxCache.img == nil {
		img, err := BuildBusybox(context.Background(), DefaultCacheDir())
		if err != nil {
			t.Fatalf("busybox test image: %v", err)
		}
		busyboxCache.img = img
	}
	return busyboxCache.img
}

// DefaultCacheDir is where fetched packages are kept between runs.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vk-applevm", "imagetest")
	}
	return filepath.Join(os.TempDir(), "vk-applevm-imagetest")
}

// BuildBusybox builds the busybox image: /bin/busybox, its applet
// symlinks (busybox --list-full), /etc/passwd and /etc/group with root and
// user 1000 "user", /tmp (1777), /root, /home/user; Cmd ["sh"].
func BuildBusybox(ctx context.Context, cacheDir string) (v1.Image, error) {
	bin, err := FindBusybox(ctx, cacheDir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}
	files := busyboxFiles(data, strings.Fields(string(out)))
	layer, err := Layer(files)
	if err != nil {
		return nil, fmt.Errorf("busybox layer: %w", err)
	}
	return NewImage([]v1.Layer{layer}, v1.Config{Env: []string{busyboxPath}, Cmd: []string{"sh"}})
}

// BusyboxFor builds the same image around binary, a static busybox for
// linux/arch, with the applets given (paths such as "bin/sh"): for a host
// that cannot run the binary to list them, as a Mac building its arm64 and
// amd64 (Rosetta) images.
func BusyboxFor(binary []byte, arch string, applets []string) (v1.Image, error) {
	layer, err := Layer(busyboxFiles(binary, applets))
	if err != nil {
		return nil, fmt.Errorf("busybox layer: %w", err)
	}
	img, err := NewImage([]v1.Layer{layer}, v1.Config{Env: []string{busyboxPath}, Cmd: []string{"sh"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	return mutate.ConfigFile(img, cf)
}

func busyboxFiles(binary []byte, applets []string) []File {
	files := []File{
		Dir("bin", 0o755), Dir("sbin", 0o755), Dir("usr", 0o755), Dir("usr/bin", 0o755), Dir("usr/sbin", 0o755),
		Dir("etc", 0o755), Dir("root", 0o700), Dir("home", 0o755),
		{Path: "home/user", Mode: fs.ModeDir | 0o755, UID: 1000, GID: 1000},
		Dir("tmp", 0o777|fs.ModeSticky),
		// Mount points the guest agent uses.
		Dir("dev", 0o755), Dir("proc", 0o555), Dir("sys", 0o555), Dir("run", 0o755), Dir("var", 0o755),
		Regular("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		Regular("etc/group", 0o644, "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"),
		{Path: "bin/busybox", Mode: 0o755, Data: binary},
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.Path] = true
	}
	slices.Sort(applets)
	for _, a := range applets {
		a = strings.TrimPrefix(a, "/")
		if seen[a] || a == "" {
			continue
		}
		if dir := path.Dir(a); dir != "." && !seen[dir] {
			files = append(files, Dir(dir, 0o755))
			seen[dir] = true
		}
		files = append(files, Symlink(a, "/bin/busybox"))
		seen[a] = true
	}
	return files
}

// FindBusybox returns a static busybox binary for the host: the installed
// one, else one fetched earlier into cacheDir, else it runs `apt-get
// download busybox-static` into cacheDir and unpacks it with dpkg-deb -x.
func FindBusybox(ctx context.Context, cacheDir string) (string, error) {
	unpacked := filepath.Join(cacheDir, "busybox-static")
	candidates := slices.Clone(busyboxCandidates)
	for _, c := range debBusyboxPaths {
		candidates = append(candidates, filepath.Join(unpacked, c))
	}
	var reasons []string
	for _, c := range candidates {
		err := checkStatic(c)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			reasons = append(reasons, err.Error())
		}
	}
	if err := fetchBusyboxDeb(ctx, cacheDir, unpacked); err != nil {
		reasons = append(reasons, err.Error())
		return "", fmt.Errorf("no static busybox (%s); %s", strings.Join(reasons, "; "), BusyboxHint)
	}
	for _, c := range debBusyboxPaths {
		if err := checkStatic(filepath.Join(unpacked, c)); err == nil {
			return filepath.Join(unpacked, c), nil
		}
	}
	return "", fmt.Errorf("busybox-static package unpacked in %s holds no static busybox; %s", unpacked, BusyboxHint)
}

// checkStatic accepts a statically linked ELF for the host architecture:
// the image runs it in a guest of the host's architecture with no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if f.Machine != want {
		return fmt.Errorf("%s is for %v, not %s", p, f.Machine, runtime.GOARCH)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return nil
}

func fetchBusyboxDeb(ctx context.Context, cacheDir, unpacked string) error {
	debDir := filepath.Join(cacheDir, "deb")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return fmt.Errorf("fetch busybox-static: %w", err)
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", "busybox-static")
	cmd.Dir = debDir // apt-get download writes into the working directory
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download busybox-static: %w: %s", err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(debDir, "busybox-static_*.deb"))
	if len(debs) == 0 {
		return fmt.Errorf("apt-get download busybox-static left no .deb in %s", debDir)
	}
	slices.Sort(debs)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[len(debs)-1], unpacked).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[len(debs)-1], err, strings.TrimSpace(string(out)))
	}
	return nil
}
