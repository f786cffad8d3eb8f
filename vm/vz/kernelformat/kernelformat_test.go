package kernelformat

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// arm64Image builds a minimal Image the way the kernel's head.S lays out its
// header: an EFI "MZ" code0, text_offset 0, image_size, flags, the magic at
// 56, then a body.
func arm64Image(body int) []byte {
	b := make([]byte, HeaderSize+body)
	copy(b, "MZ")
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b))) // image_size
	binary.LittleEndian.PutUint64(b[24:], 0xa)            // flags: LE, 4K pages
	binary.LittleEndian.PutUint32(b[arm64MagicOffset:], arm64Magic)
	for i := HeaderSize; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch format {
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown format %s", format)
	}
	return buf.Bytes()
}

func TestCheck(t *testing.T) {
	image := arm64Image(4096)

	// A branch instruction as code0 instead of the EFI "MZ" (kernels built
	// without CONFIG_EFI) is still an Image.
	noEFI := arm64Image(128)
	binary.LittleEndian.PutUint32(noEFI[0:], 0x14000010) // b #0x40

	zboot := make([]byte, 1024)
	copy(zboot, "MZ\x00\x00zimg")
	copy(zboot[32:], "gzip")

	bzImage := make([]byte, 1024)
	copy(bzImage[0x1fe:], "\x55\xaa\xeb\x66HdrS") // boot_flag, jump, header

	zImage := make([]byte, 1024)
	binary.LittleEndian.PutUint32(zImage[armZImageMagicOffset:], armZImageMagic)

	elf := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...)

	withFlags := func(flags uint64) []byte {
		b := arm64Image(128)
		binary.LittleEndian.PutUint64(b[24:], flags)
		return b
	}
	preV317 := arm64Image(128) // image_size 0: the flags are not read
	binary.LittleEndian.PutUint64(preV317[16:], 0)
	binary.LittleEndian.PutUint64(preV317[24:], 0xff)

	cases := []struct {
		name    string
		data    []byte
		wantErr string // "" means accepted
	}{
		{"arm64 Image", image, ""},
		{"arm64 Image without EFI stub", noEFI, ""},
		{"16K pages", withFlags(0xc), ""},
		{"page size unspecified", withFlags(0x8), ""},
		{"header before v3.17", preV317, ""},
		{"big-endian", withFlags(0xb), "big-endian"},
		{"64K pages", withFlags(0xe), "64K pages"},
		{"gzip vmlinuz", compress(t, "gzip", image), "gzip-compressed"},
		{"zstd vmlinuz", compress(t, "zstd", image), "zstd-compressed"},
		{"xz vmlinuz", compress(t, "xz", image), "xz-compressed"},
		{"EFI zboot", zboot, "EFI zboot"},
		{"x86 bzImage", bzImage, "x86 bzImage"},
		{"32-bit ARM zImage", zImage, "32-bit ARM zImage"},
		{"ELF vmlinux", elf, "ELF vmlinux"},
		{"short file", image[:40], "shorter than the 64-byte"},
		{"empty file", nil, "0 bytes"},
		{"random bytes", bytes.Repeat([]byte{0x42}, 512), "no \"ARM\\x64\" magic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kernel")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := CheckFile(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckFile: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckFile accepted %s", tc.name)
			}
			if !errors.Is(err, ErrNotArm64Image) {
				t.Errorf("error %v does not wrap ErrNotArm64Image", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckFileMissing(t *testing.T) {
	err := CheckFile(filepath.Join(t.TempDir(), "absent"))
	if err == nil || errors.Is(err, ErrNotArm64Image) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want a not-exist error that is not a format error", err)
	}
}
