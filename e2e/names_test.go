//go:build linux || darwin

package e2e

import (
	"fmt"
	"strings"
	"sync/atomic"
)

var nameSeq atomic.Int64

// uniqueName gives every run of a test its own object names, so that
// `go test -count=N` runs a test N times instead of finding the objects of
// the previous run (a pod of the same name, still terminating or Failed).
func uniqueName(base string) string {
	return fmt.Sprintf("%s-%d", base, nameSeq.Add(1))
}

// named puts name in place of NAME in a manifest.
func named(manifest, name string) string {
	return strings.ReplaceAll(manifest, "NAME", name)
}
