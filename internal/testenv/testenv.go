// Package testenv sorts the tests into tiers. `go test -short ./...` (make
// test-unit) runs anywhere, as any user, on Linux and on a Mac, in under two
// minutes; a test that needs root, VMs (QEMU and the guest bundle), network
// namespaces or a control plane calls Needs, which skips it under -short
// with the reason. Without -short (make test, CI) the test runs, and a
// missing prerequisite fails it with how to get it: nothing is skipped
// silently.
package testenv

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// Needs skips t under -short, saying what it needs.
func Needs(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: needs %s", what)
	}
}

// NeedsRoot skips t under -short; otherwise it fails t when not running as
// root, with why root is needed.
func NeedsRoot(t testing.TB, why string) {
	t.Helper()
	Needs(t, "root ("+why+")")
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (%s): run as root, as make test does", why)
	}
}

// SkipPackage is for a TestMain whose every test needs what: under -short
// it prints why the package is skipped and returns true (the caller exits
// 0 without running its set-up).
func SkipPackage(what string) bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	if !testing.Short() {
		return false
	}
	fmt.Printf("-short: every test here needs %s; skipped\n", what)
	return true
}
