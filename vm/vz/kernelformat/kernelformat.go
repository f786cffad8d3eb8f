// Package kernelformat recognises the kernel file formats a user may hand to
// the vz backend and accepts only the one Virtualization.framework boots on
// Apple silicon: an uncompressed arm64 Linux Image (arch/arm64/boot/Image).
// VZLinuxBootLoader does not decompress, so a vmlinuz (gzip), an EFI zboot
// image or an ELF vmlinux fails late and obscurely at VM start; checking the
// header up front turns that into a clear error that says what to do.
//
// The package is pure Go and a leaf: vm/vz uses it when it translates a
// spec, guest/kernelfetch when it installs a kernel.
package kernelformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// HeaderSize is the size of the arm64 Image header
// (Documentation/arch/arm64/booting.rst, "Call the kernel image").
const HeaderSize = 64

// ErrNotArm64Image wraps every rejection, so callers can tell a wrong format
// from an I/O error.
var ErrNotArm64Image = errors.New("not an uncompressed arm64 Linux Image")

// Offsets and magic numbers, each from the format's own definition.
const (
	// arm64Magic is "ARM\x64" read little-endian at offset 56 of the Image
	// header (booting.rst: "magic = 0x644d5241").
	arm64MagicOffset = 56
	arm64Magic       = 0x644d5241
	// armZImageMagic sits at offset 0x24 of a 32-bit ARM zImage
	// (arch/arm/boot/compressed/head.S: ".word 0x016f2818").
	armZImageMagicOffset = 0x24
	armZImageMagic       = 0x016f2818
	// x86BootMagic "HdrS" sits at offset 0x202 of a bzImage
	// (Documentation/arch/x86/boot.rst, "header" field).
	x86BootMagicOffset = 0x202
	// zbootTypeOffset holds "zimg" in an EFI zboot image
	// (drivers/firmware/efi/libstub/zboot-header.S).
	zbootTypeOffset = 4
)

// compressedMagics are leading bytes of whole-file compression formats a
// kernel is commonly shipped in (vmlinuz), from each format's specification.
var compressedMagics = []struct {
	name  string
	magic []byte
}{
	{"gzip", []byte{0x1f, 0x8b}},                           // RFC 1952
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},               // RFC 8878
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},         // xz file format 1.0.4
	{"bzip2", []byte{'B', 'Z', 'h'}},                       // bzip2 stream header
	{"lz4", []byte{0x04, 0x22, 0x4d, 0x18}},                // LZ4 frame format
	{"lzma", []byte{0x5d, 0x00, 0x00}},                     // LZMA-alone header
	{"lzo", []byte{0x89, 'L', 'Z', 'O', 0x00, '\r', '\n'}}, // lzop header
}

const fixHint = "vz needs the uncompressed arm64 Image (arch/arm64/boot/Image); " +
	"`vk-applevm kernel fetch` installs one"

// Check inspects the first bytes of a kernel file (at least HeaderSize;
// more lets it recognise an x86 bzImage) and returns nil only for an arm64
// Image. Every error wraps ErrNotArm64Image and names the format it found.
func Check(header []byte) error {
	// The magic decides; the rest only names what the file is instead.
	if len(header) >= HeaderSize && binary.LittleEndian.Uint32(header[arm64MagicOffset:]) == arm64Magic {
		return checkFlags(header)
	}
	for _, c := range compressedMagics {
		if bytes.HasPrefix(header, c.magic) {
			return fmt.Errorf("%w: the file is %s-compressed (a vmlinuz); %s", ErrNotArm64Image, c.name, fixHint)
		}
	}
	if bytes.HasPrefix(header, []byte("\x7fELF")) {
		return fmt.Errorf("%w: the file is an ELF vmlinux; %s", ErrNotArm64Image, fixHint)
	}
	if bytes.HasPrefix(header, []byte("MZ")) && hasAt(header, zbootTypeOffset, []byte("zimg")) {
		return fmt.Errorf("%w: the file is an EFI zboot (compressed) image; %s", ErrNotArm64Image, fixHint)
	}
	if len(header) >= x86BootMagicOffset+4 && hasAt(header, x86BootMagicOffset, []byte("HdrS")) {
		return fmt.Errorf("%w: the file is an x86 bzImage; Apple silicon runs arm64 guests only", ErrNotArm64Image)
	}
	if len(header) >= armZImageMagicOffset+4 &&
		binary.LittleEndian.Uint32(header[armZImageMagicOffset:]) == armZImageMagic {
		return fmt.Errorf("%w: the file is a 32-bit ARM zImage; %s", ErrNotArm64Image, fixHint)
	}
	if len(header) < HeaderSize {
		return fmt.Errorf("%w: the file is %d bytes, shorter than the %d-byte Image header", ErrNotArm64Image, len(header), HeaderSize)
	}
	return fmt.Errorf("%w: no \"ARM\\x64\" magic at offset %d; %s", ErrNotArm64Image, arm64MagicOffset, fixHint)
}

// Image header fields (booting.rst): image_size at 16 and flags at 24, both
// little-endian u64 whatever the kernel's endianness. Flags bit 0 is 1 for
// a big-endian kernel; bits 1-2 give the page size (0 unspecified, 1 4K,
// 2 16K, 3 64K). Kernels before v3.17 leave image_size zero and their flags
// mean nothing.
const (
	imageSizeOffset = 16
	flagsOffset     = 24
	flagBigEndian   = 1 << 0
	pageSizeShift   = 1
	pageSizeMask    = 3
	pageSize64K     = 3
)

// checkFlags refuses Images Apple silicon cannot run: they hang without a
// word on the console instead of failing. Its cores implement 4K and 16K
// translation granules, not 64K, and run little-endian at EL1 under vz.
func checkFlags(header []byte) error {
	if binary.LittleEndian.Uint64(header[imageSizeOffset:]) == 0 {
		return nil // pre-3.17 header: no flags to read
	}
	flags := binary.LittleEndian.Uint64(header[flagsOffset:])
	if flags&flagBigEndian != 0 {
		return fmt.Errorf("%w: the Image is a big-endian kernel (header flags %#x); vz runs little-endian arm64 guests only", ErrNotArm64Image, flags)
	}
	if (flags>>pageSizeShift)&pageSizeMask == pageSize64K {
		return fmt.Errorf("%w: the Image uses 64K pages (header flags %#x); Apple silicon has no 64K granule, build with 4K or 16K pages (CONFIG_ARM64_4K_PAGES)", ErrNotArm64Image, flags)
	}
	return nil
}

// sniffSize is how much of a file CheckFile reads: enough for the x86
// bzImage magic at 0x202, the furthest offset Check looks at.
const sniffSize = 1024

// CheckReader reads the start of r and checks it (see Check).
func CheckReader(r io.Reader) error {
	buf := make([]byte, sniffSize)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read kernel header: %w", err)
	}
	return Check(buf[:n])
}

// CheckFile checks the kernel file at path (see Check).
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open kernel: %w", err)
	}
	defer f.Close()
	if err := CheckReader(f); err != nil {
		return fmt.Errorf("kernel %s: %w", path, err)
	}
	return nil
}

func hasAt(b []byte, off int, want []byte) bool {
	return len(b) >= off+len(want) && bytes.Equal(b[off:off+len(want)], want)
}
