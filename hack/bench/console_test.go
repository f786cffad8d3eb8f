package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A console excerpt of Debian's cloud kernel booting the agent under QEMU.
const consoleExcerpt = `[    1.345890] Write protecting the kernel read-only data: 26624k
[    1.353010] x86/mm: Checked W+X mappings: passed, no W+X pages found.
[    1.353315] Run /init as init process
[    1.482996] ACPI: \_SB_.GSIF: Enabled at IRQ 21
`

func TestInitStart(t *testing.T) {
	if got := parseInitStart([]byte(consoleExcerpt)); got != 1353315*time.Microsecond {
		t.Fatalf("init start %v, want 1.353315s", got)
	}
	if got := parseInitStart([]byte("Run /init as init process\n")); got != 0 {
		t.Fatalf("a line without a timestamp gave %v", got)
	}
	if got := initStart(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Fatalf("a missing log gave %v", got)
	}
}

func TestConsoleTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	long := strings.Repeat("early line\n", 500) + "last line\n"
	if err := os.WriteFile(p, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := consoleTail(p)
	if !strings.HasSuffix(tail, "last line\n") || len(tail) > 2200 || strings.Contains(tail, "\nly line") {
		t.Fatalf("tail of %d bytes, cut mid-line or without the end: %q", len(tail), tail[:80])
	}
	if consoleTail(filepath.Join(t.TempDir(), "none")) != "" {
		t.Fatal("a missing log has a tail")
	}
}
