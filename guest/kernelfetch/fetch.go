package kernelfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/vm/vz/kernelformat"
)

// DefaultName is the installed kernel's file name in the bundle directory.
const DefaultName = "vmlinux"

// defaultMaxArchiveBytes bounds a download. Kata's arm64 static archive is
// about 600 MB (3.32.0); four times that leaves room for later releases
// while stopping a runaway or wrong URL from filling the disk.
const defaultMaxArchiveBytes = 2 << 30

// Options configure Fetch.
type Options struct {
	// Dir is the guest bundle directory the kernel is installed into
	// (created if missing). Required.
	Dir string
	// Name is the installed file's name; DefaultName if empty.
	Name string
	// Kernel, if set, installs this local file instead of downloading
	// (`--kernel PATH`); it must be an uncompressed arm64 Image.
	Kernel string
	// Pin selects the release; the zero Pin means DefaultPin().
	Pin Pin
	// Force downloads even when the installed kernel already matches the
	// pin's MemberSHA256.
	Force bool
	// Client makes the request; nil means http.DefaultClient. The download
	// is bounded by ctx, not by a client timeout.
	Client *http.Client
	// MaxArchiveBytes bounds the download; 0 means 2 GiB.
	MaxArchiveBytes int64
	// Progress, if set, is called as archive bytes arrive; total is -1
	// when the server sends no length.
	Progress func(done, total int64)
	// Logger receives progress milestones; nil means slog.Default().
	Logger *slog.Logger
}

// Result describes the installed kernel.
type Result struct {
	// Path is the installed kernel.
	Path string
	// SHA256 is the installed kernel's digest.
	SHA256 string
	// Size is its length in bytes.
	Size int64
	// KernelRelease is the release in the kernel's banner (`uname -r` in
	// the guest), "" if the file has none; bundle.json records it.
	KernelRelease string
	// Source is the URL (with the archive member) or local path it came from.
	Source string
	// Cached is true when the kernel in place already matched the pin and
	// nothing was downloaded.
	Cached bool
}

// Fetch installs a kernel into opts.Dir: a local file (opts.Kernel) or the
// pinned release. Nothing is installed unless every check passes; a kernel
// already in place is replaced atomically.
func Fetch(ctx context.Context, opts Options) (Result, error) {
	if opts.Dir == "" {
		return Result{}, errors.New("kernel fetch: no bundle directory given")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("kernel fetch: create bundle directory: %w", err)
	}
	dst := filepath.Join(opts.Dir, opts.Name)
	if opts.Kernel != "" {
		res, err := installLocal(opts.Kernel, dst)
		if err != nil {
			return Result{}, fmt.Errorf("kernel fetch: install %s: %w", opts.Kernel, err)
		}
		return withRelease(ctx, log, res)
	}

	pin := opts.Pin
	if pin == (Pin{}) {
		pin = DefaultPin()
	}
	if err := pin.Validate(); err != nil {
		return Result{}, fmt.Errorf("kernel fetch: %w", err)
	}
	source := pin.URL + "#" + memberName(pin.Member)
	if !opts.Force && pin.MemberSHA256 != "" {
		if sum, size, err := fileSHA256(dst); err == nil && sum == pin.MemberSHA256 {
			return withRelease(ctx, log, Result{Path: dst, SHA256: sum, Size: size, Source: source, Cached: true})
		}
	}

	log.InfoContext(ctx, "downloading kernel archive", "url", pin.URL, "release", pin.Release)
	archive, err := download(ctx, opts, pin)
	if err != nil {
		return Result{}, fmt.Errorf("kernel fetch: %w", err)
	}
	defer os.Remove(archive)

	tmp, sum, size, err := extractMember(ctx, archive, pin.Member, opts.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("kernel fetch: %s: %w", pin.URL, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	if err := kernelformat.CheckFile(tmp); err != nil {
		return Result{}, fmt.Errorf("kernel fetch: member %s of %s: %w", pin.Member, pin.URL, err)
	}
	if pin.MemberSHA256 != "" && sum != pin.MemberSHA256 {
		return Result{}, fmt.Errorf("kernel fetch: member %s has sha256 %s, the pin says %s; nothing installed",
			pin.Member, sum, pin.MemberSHA256)
	}
	if err := commit(tmp, dst); err != nil {
		return Result{}, fmt.Errorf("kernel fetch: %w", err)
	}
	return withRelease(ctx, log, Result{Path: dst, SHA256: sum, Size: size, Source: source})
}

// withRelease fills in the installed kernel's release and logs the result.
func withRelease(ctx context.Context, log *slog.Logger, res Result) (Result, error) {
	release, err := kernelRelease(res.Path)
	if err != nil {
		return Result{}, fmt.Errorf("kernel fetch: %w", err)
	}
	res.KernelRelease = release
	log.InfoContext(ctx, "kernel installed", "path", res.Path, "from", res.Source,
		"release", release, "sha256", res.SHA256, "cached", res.Cached)
	return res, nil
}

// download writes the archive to a temporary file in opts.Dir while hashing
// it and returns the file's path once the hash matches the pin.
func download(ctx context.Context, opts Options, pin Pin) (_ string, err error) {
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	limit := opts.MaxArchiveBytes
	if limit <= 0 {
		limit = defaultMaxArchiveBytes
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pin.URL, nil)
	if err != nil {
		return "", fmt.Errorf("request %s: %w", pin.URL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", pin.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: server answered %s", pin.URL, resp.Status)
	}
	if resp.ContentLength > limit {
		return "", fmt.Errorf("download %s: %d bytes exceeds the %d-byte limit", pin.URL, resp.ContentLength, limit)
	}

	f, err := os.CreateTemp(opts.Dir, ".kernel-archive-*")
	if err != nil {
		return "", fmt.Errorf("create download file: %w", err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	hash := sha256.New()
	var sink io.Writer = io.MultiWriter(f, hash)
	if opts.Progress != nil {
		sink = &progressWriter{w: sink, total: resp.ContentLength, report: opts.Progress}
	}
	n, err := io.Copy(sink, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("download %s: after %d bytes: %w", pin.URL, n, err)
	}
	if n > limit {
		return "", fmt.Errorf("download %s: more than the %d-byte limit", pin.URL, limit)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("download %s: truncated: %d of %d bytes", pin.URL, n, resp.ContentLength)
	}
	if sum := hex.EncodeToString(hash.Sum(nil)); sum != pin.SHA256 {
		return "", fmt.Errorf("download %s: sha256 %s does not match the pinned %s (%d bytes; corrupted, or the asset changed); nothing installed",
			pin.URL, sum, pin.SHA256, n)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write download file: %w", err)
	}
	return f.Name(), nil
}

type progressWriter struct {
	w      io.Writer
	done   int64
	total  int64
	report func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.report(p.done, p.total)
	return n, err
}

// installLocal copies a local kernel into place after checking its format.
func installLocal(src, dst string) (Result, error) {
	if err := kernelformat.CheckFile(src); err != nil {
		return Result{}, err
	}
	in, err := os.Open(src)
	if err != nil {
		return Result{}, fmt.Errorf("open: %w", err)
	}
	defer in.Close()
	tmp, sum, size, err := writeTemp(filepath.Dir(dst), in)
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp)
	if err := commit(tmp, dst); err != nil {
		return Result{}, err
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		abs = src
	}
	return Result{Path: dst, SHA256: sum, Size: size, Source: abs}, nil
}
