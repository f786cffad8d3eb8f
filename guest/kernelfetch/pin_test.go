package kernelfetch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The compiled-in pin must be complete and name a Kata arm64 release whose
// archive format Fetch can open.
func TestDefaultPin(t *testing.T) {
	p := DefaultPin()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.URL, "https://github.com/kata-containers/kata-containers/releases/download/") ||
		!strings.HasSuffix(p.URL, "-arm64.tar.zst") {
		t.Errorf("default pin url %q is not a Kata arm64 .tar.zst release asset", p.URL)
	}
	if !strings.HasPrefix(p.Member, "opt/kata/share/kata-containers/vmlinux-") {
		t.Errorf("default pin member %q is not Kata's versioned kernel", p.Member)
	}
	if p.MemberSHA256 == "" {
		t.Errorf("default pin has no member sha256: installed kernels could not be recognised")
	}
}

func TestLoadPin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kernel-pin.json")
	data, err := os.ReadFile("kernel-pin.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPin(file)
	if err != nil {
		t.Fatalf("LoadPin: %v", err)
	}
	if p != DefaultPin() {
		t.Errorf("LoadPin(kernel-pin.json) = %+v, want the default pin", p)
	}
}

func TestPinValidate(t *testing.T) {
	ok := Pin{URL: "https://example.invalid/k.tar.zst", SHA256: strings.Repeat("ab", 32), Member: "./opt/vmlinux"}
	cases := []struct {
		name    string
		mutate  func(*Pin)
		wantErr string
	}{
		{"valid", func(p *Pin) {}, ""},
		{"valid with member sha", func(p *Pin) { p.MemberSHA256 = strings.Repeat("0", 64) }, ""},
		{"file url", func(p *Pin) { p.URL = "file:///tmp/k.tar" }, "http(s) URL"},
		{"no host", func(p *Pin) { p.URL = "https:///k.tar" }, "http(s) URL"},
		{"short sha", func(p *Pin) { p.SHA256 = "abc" }, "64 lower-case hex"},
		{"upper-case sha", func(p *Pin) { p.SHA256 = strings.Repeat("AB", 32) }, "64 lower-case hex"},
		{"bad member sha", func(p *Pin) { p.MemberSHA256 = "xyz" }, "memberSha256"},
		{"empty member", func(p *Pin) { p.Member = "" }, "relative path"},
		{"escaping member", func(p *Pin) { p.Member = "../etc/passwd" }, "relative path"},
		{"absolute member", func(p *Pin) { p.Member = "/vmlinux" }, "relative path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mutate(&p)
			err := p.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPin) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate: %v, want ErrInvalidPin mentioning %q", err, tc.wantErr)
			}
		})
	}
}
