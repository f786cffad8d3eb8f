// Package kernelfetch installs the guest kernel the vz backend boots: an
// uncompressed arm64 Image with every virtio driver built in. It is the
// logic of `vk-applevm kernel fetch`.
//
// By default it downloads the pinned release in kernel-pin.json: Kata
// Containers' static arm64 release, whose vmlinux is exactly such an Image
// (Apple's container tool boots the same file). The archive is written to a
// temporary file while its SHA-256 is computed, checked against the pin,
// and only then opened, so nothing unverified is ever parsed or installed;
// the kernel member is extracted, its format checked (and its own SHA-256,
// when pinned), and renamed into the bundle directory atomically.
//
// Options.Kernel installs a local file instead, after checking it is an
// arm64 Image.
//
// The pin's hashes were taken from independent projects that verify the same
// asset fail-closed (the archive hash from three, the member hash from one);
// to move to another release, edit kernel-pin.json — URL, archive SHA-256,
// member path, and the member's SHA-256 or "" — and run the fetch once.
package kernelfetch

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
)

// Pin names one kernel release asset and how to verify it.
type Pin struct {
	// Release describes the pin for people.
	Release string `json:"release,omitempty"`
	// URL is the archive (.tar.zst, .tar.xz, .tar.gz or .tar).
	URL string `json:"url"`
	// SHA256 is the archive's digest, lower-case hex.
	SHA256 string `json:"sha256"`
	// Member is the kernel's path inside the archive; a leading "./" is
	// optional.
	Member string `json:"member"`
	// MemberSHA256 is the kernel's own digest; optional, and with it an
	// installed kernel that already matches is not downloaded again.
	MemberSHA256 string `json:"memberSha256,omitempty"`
}

//go:embed kernel-pin.json
var defaultPinJSON []byte

// DefaultPin is the release `vk-applevm kernel fetch` installs.
func DefaultPin() Pin {
	p, err := ParsePin(defaultPinJSON)
	if err != nil {
		// The file is compiled in and tested; this cannot happen in a
		// released binary.
		panic(fmt.Sprintf("kernelfetch: embedded kernel-pin.json: %v", err))
	}
	return p
}

// ParsePin decodes and validates a pin.
func ParsePin(data []byte) (Pin, error) {
	var p Pin
	if err := json.Unmarshal(data, &p); err != nil {
		return Pin{}, fmt.Errorf("decode kernel pin: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Pin{}, err
	}
	return p, nil
}

// LoadPin reads a pin file such as kernel-pin.json.
func LoadPin(file string) (Pin, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Pin{}, fmt.Errorf("read kernel pin: %w", err)
	}
	p, err := ParsePin(data)
	if err != nil {
		return Pin{}, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// ErrInvalidPin wraps every validation failure of a Pin.
var ErrInvalidPin = errors.New("invalid kernel pin")

// Validate checks that the pin can be fetched and verified.
func (p Pin) Validate() error {
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: url %q must be an http(s) URL", ErrInvalidPin, p.URL)
	}
	if !isSHA256(p.SHA256) {
		return fmt.Errorf("%w: sha256 %q must be 64 lower-case hex digits", ErrInvalidPin, p.SHA256)
	}
	if p.MemberSHA256 != "" && !isSHA256(p.MemberSHA256) {
		return fmt.Errorf("%w: memberSha256 %q must be 64 lower-case hex digits or empty", ErrInvalidPin, p.MemberSHA256)
	}
	m := memberName(p.Member)
	if m == "" || m == "." || strings.HasPrefix(m, "../") || path.IsAbs(m) {
		return fmt.Errorf("%w: member %q must be a relative path inside the archive", ErrInvalidPin, p.Member)
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && s == strings.ToLower(s)
}

// memberName normalises an archive path: tar files from `tar -C dir .`
// name members "./opt/...", pins are written without the "./".
func memberName(name string) string {
	return strings.TrimPrefix(path.Clean(name), "./")
}
