// Package binfmt registers interpreters for foreign executables with the
// Linux kernel's binfmt_misc (Documentation/admin-guide/binfmt-misc.rst).
// The guest agent uses it to run x86-64 binaries through Apple's Rosetta
// when the host shares the translator into an arm64 VM.
//
// Line builds the text written to binfmt_misc's register file and is plain
// Go; Register (Linux) mounts binfmt_misc when needed and writes it.
package binfmt

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid wraps every validation failure of a Registration.
var ErrInvalid = errors.New("invalid binfmt_misc registration")

// Kernel limits (fs/binfmt_misc.c): a register write is at most
// MAX_REGISTER_LENGTH bytes, and offset + magic must fit in the part of the
// file the kernel reads before choosing a handler (BINPRM_BUF_SIZE).
const (
	maxRegisterLength = 1920
	binprmBufSize     = 256
)

// Registration is one magic-number handler: executables whose first bytes,
// masked with Mask, equal Magic run as Interpreter with the file's path
// appended to its arguments.
type Registration struct {
	// Name is the entry's file name under the binfmt_misc mount.
	Name string
	// Magic is compared against the file's first len(Magic) bytes.
	Magic []byte
	// Mask, when set, is ANDed with the file's bytes before comparing; it
	// has Magic's length.
	Mask []byte
	// Interpreter is the absolute path of the program that runs the file.
	Interpreter string
	// Flags are binfmt_misc's one-letter flags, e.g. "CF": F opens the
	// interpreter at registration, so it also runs in other mount
	// namespaces and chroots; C takes credentials (setuid bits) from the
	// executable rather than the interpreter.
	Flags string
}

// validFlags are the flags the kernel accepts (binfmt-misc.rst, "flags").
const validFlags = "POCF"

// Line is the registration as written to binfmt_misc's register file:
// ":name:M::magic:mask:interpreter:flags", every magic and mask byte
// escaped as \xHH so no byte can be taken for the ':' separator.
func (r Registration) Line() (string, error) {
	if err := r.validate(); err != nil {
		return "", err
	}
	line := ":" + r.Name + ":M::" + escape(r.Magic) + ":" + escape(r.Mask) + ":" + r.Interpreter + ":" + r.Flags
	if len(line) > maxRegisterLength {
		return "", fmt.Errorf("%w: %s: %d bytes, the kernel takes at most %d", ErrInvalid, r.Name, len(line), maxRegisterLength)
	}
	return line, nil
}

func (r Registration) validate() error {
	var problems []string
	switch {
	case r.Name == "", r.Name == ".", r.Name == "..", r.Name == "register", r.Name == "status":
		problems = append(problems, fmt.Sprintf("name %q is reserved or empty", r.Name))
	case strings.ContainsAny(r.Name, ":/\n"):
		problems = append(problems, fmt.Sprintf("name %q contains ':', '/' or a newline", r.Name))
	}
	if len(r.Magic) == 0 || len(r.Magic) > binprmBufSize {
		problems = append(problems, fmt.Sprintf("magic is %d bytes, want 1 to %d", len(r.Magic), binprmBufSize))
	}
	if r.Mask != nil && len(r.Mask) != len(r.Magic) {
		problems = append(problems, fmt.Sprintf("mask is %d bytes, magic %d", len(r.Mask), len(r.Magic)))
	}
	if !strings.HasPrefix(r.Interpreter, "/") || strings.ContainsAny(r.Interpreter, ":\n") {
		problems = append(problems, fmt.Sprintf("interpreter %q must be an absolute path without ':'", r.Interpreter))
	}
	for _, f := range r.Flags {
		if !strings.ContainsRune(validFlags, f) || strings.Count(r.Flags, string(f)) > 1 {
			problems = append(problems, fmt.Sprintf("flags %q: each of %s at most once", r.Flags, validFlags))
			break
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w %q: %s", ErrInvalid, r.Name, strings.Join(problems, "; "))
	}
	return nil
}

func escape(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, `\x%02x`, c)
	}
	return s.String()
}

// Matches reports whether an executable starting with header would be
// handed to r's interpreter, comparing as the kernel does.
func (r Registration) Matches(header []byte) bool {
	if len(header) < len(r.Magic) {
		return false
	}
	for i, m := range r.Magic {
		// The kernel compares only the bits set in the mask
		// (fs/binfmt_misc.c, check_file).
		diff := header[i] ^ m
		if r.Mask != nil {
			diff &= r.Mask[i]
		}
		if diff != 0 {
			return false
		}
	}
	return true
}

// X86_64ELF matches x86-64 ELF executables and shared objects (PIE): the
// ELF identification (64-bit, little-endian, version 1, any OS ABI),
// e_type ET_EXEC or ET_DYN, e_machine EM_X86_64. These are the bytes QEMU's
// scripts/qemu-binfmt-conf.sh registers for x86_64, and the ones Apple's
// "Running Intel binaries in Linux VMs with Rosetta" registers for Rosetta.
var X86_64ELF = struct{ Magic, Mask []byte }{
	Magic: []byte{
		0x7f, 'E', 'L', 'F', // EI_MAG
		0x02, 0x01, 0x01, 0x00, // ELFCLASS64, ELFDATA2LSB, EV_CURRENT (bit 0 of both masked), OS ABI (ignored)
		0, 0, 0, 0, 0, 0, 0, 0, // ABI version, padding
		0x02, 0x00, // e_type ET_EXEC (ET_DYN = 3 passes the mask)
		0x3e, 0x00, // e_machine EM_X86_64
	},
	Mask: []byte{
		0xff, 0xff, 0xff, 0xff,
		0xff, 0xfe, 0xfe, 0x00,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xfe, 0xff,
		0xff, 0xff,
	},
}

// Rosetta is the registration that runs x86-64 executables through the
// Rosetta translator at interpreter (the "rosetta" binary of the share vz
// exports). Flags: F, so processes chrooted into a container's root
// filesystem use it without seeing the share; C, so setuid x86-64 binaries
// keep their credentials — Apple's instructions register it the same way
// (update-binfmts --credentials yes --fix-binary yes).
func Rosetta(interpreter string) Registration {
	return Registration{
		Name:        "rosetta",
		Magic:       X86_64ELF.Magic,
		Mask:        X86_64ELF.Mask,
		Interpreter: interpreter,
		Flags:       "CF",
	}
}
