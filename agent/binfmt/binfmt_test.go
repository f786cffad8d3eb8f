package binfmt

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestRosettaLine(t *testing.T) {
	line, err := Rosetta("/run/vkav/rosetta/rosetta").Line()
	if err != nil {
		t.Fatal(err)
	}
	// The bytes of QEMU's qemu-binfmt-conf.sh x86_64 entry and Apple's
	// Rosetta instructions, written out by hand.
	want := `:rosetta:M::` +
		`\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00:` +
		`\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:` +
		`/run/vkav/rosetta/rosetta:CF`
	if line != want {
		t.Fatalf("registration line\n got %s\nwant %s", line, want)
	}
}

// elfHeader is the first 20 bytes of an ELF file of the given class, type
// and machine, as debug/elf defines them.
func elfHeader(class elf.Class, typ elf.Type, machine elf.Machine) []byte {
	h := make([]byte, 20)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS] = byte(class)
	h[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h[elf.EI_OSABI] = byte(elf.ELFOSABI_LINUX)
	binary.LittleEndian.PutUint16(h[16:], uint16(typ))
	binary.LittleEndian.PutUint16(h[18:], uint16(machine))
	return h
}

func TestRosettaMatchesX86_64ExecutablesOnly(t *testing.T) {
	r := Rosetta("/r")
	for _, tc := range []struct {
		name   string
		header []byte
		want   bool
	}{
		{"x86-64 static executable", elfHeader(elf.ELFCLASS64, elf.ET_EXEC, elf.EM_X86_64), true},
		{"x86-64 PIE", elfHeader(elf.ELFCLASS64, elf.ET_DYN, elf.EM_X86_64), true},
		{"arm64 executable", elfHeader(elf.ELFCLASS64, elf.ET_EXEC, elf.EM_AARCH64), false},
		{"arm64 PIE", elfHeader(elf.ELFCLASS64, elf.ET_DYN, elf.EM_AARCH64), false},
		{"i386 executable", elfHeader(elf.ELFCLASS32, elf.ET_EXEC, elf.EM_386), false},
		{"x86-64 object file", elfHeader(elf.ELFCLASS64, elf.ET_REL, elf.EM_X86_64), false},
		{"x86-64 core dump", elfHeader(elf.ELFCLASS64, elf.ET_CORE, elf.EM_X86_64), false},
		{"shell script", []byte("#!/bin/sh\necho hello world\n"), false},
		{"short file", []byte("\x7fELF"), false},
	} {
		if got := r.Matches(tc.header); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLineRejectsWhatTheKernelWouldMisread(t *testing.T) {
	ok := Registration{Name: "x", Magic: []byte("AB"), Interpreter: "/bin/x"}
	if _, err := ok.Line(); err != nil {
		t.Fatalf("valid registration: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Registration)
		want string
	}{
		{"empty name", func(r *Registration) { r.Name = "" }, "reserved or empty"},
		{"name register", func(r *Registration) { r.Name = "register" }, "reserved"},
		{"name with colon", func(r *Registration) { r.Name = "a:b" }, "contains ':'"},
		{"name with slash", func(r *Registration) { r.Name = "../x" }, "contains ':', '/'"},
		{"no magic", func(r *Registration) { r.Magic = nil }, "magic is 0 bytes"},
		{"magic too long", func(r *Registration) { r.Magic = make([]byte, 257) }, "magic is 257 bytes"},
		{"mask length", func(r *Registration) { r.Mask = []byte{0xff} }, "mask is 1 bytes, magic 2"},
		{"relative interpreter", func(r *Registration) { r.Interpreter = "bin/x" }, "absolute path"},
		{"interpreter with colon", func(r *Registration) { r.Interpreter = "/a:b" }, "without ':'"},
		{"unknown flag", func(r *Registration) { r.Flags = "FX" }, "each of POCF"},
		{"repeated flag", func(r *Registration) { r.Flags = "FF" }, "each of POCF"},
		{"too long", func(r *Registration) { r.Interpreter = "/" + strings.Repeat("a", 2000) }, "at most 1920"},
	} {
		r := ok
		tc.edit(&r)
		_, err := r.Line()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
