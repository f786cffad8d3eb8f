package agent

import (
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

//go:generate go test -run ^TestPrecompiledDefaultSeccomp$ -update-seccomp .

// precompiledSeccomp is moby's default profile already compiled by
// compileSeccomp for this binary's architecture and one capability set:
// under TCG, compiling it in the guest took 60 ms of the first container's
// start (hack/bench's run benchmark), most of it go-seccomp-bpf and moby's
// profile code running cold. It is generated (zseccomp_default_linux_ARCH.go,
// `go generate ./agent`), and TestPrecompiledDefaultSeccomp fails when
// compiling anew gives other bytes, so it cannot go stale.
type precompiledSeccomp struct {
	// caps is the bounding set it was compiled for (the profile allows
	// more calls to a container with CAP_SYS_ADMIN and others); any other
	// set is compiled at run time.
	caps []string
	// minKernel is the highest kernel version (major, minor) a rule of the
	// profile depends on: a guest kernel at least as new resolves every
	// rule as the generating machine's did.
	minKernel [2]int
	filter    []unix.SockFilter
}

// precompiledDefault is set by the generated file of this architecture;
// nil where there is none (the filter is compiled at run time).
var precompiledDefault *precompiledSeccomp

// guestKernel is the running kernel's (major, minor); ok false if the
// release does not parse.
func guestKernel() (v [2]int, ok bool) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return v, false
	}
	return parseKernelRelease(unix.ByteSliceToString(uts.Release[:]))
}

// parseKernelRelease reads "6.1.0-57-cloud-amd64" as (6, 1), as moby's
// profile code does (fmt's "%d.%d"), without fmt's scanner: under TCG
// code the agent has not run before costs its translation too.
func parseKernelRelease(release string) (v [2]int, ok bool) {
	major, rest, found := strings.Cut(release, ".")
	if !found {
		return v, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	var err1, err2 error
	v[0], err1 = strconv.Atoi(major)
	v[1], err2 = strconv.Atoi(rest[:end])
	return v, err1 == nil && err2 == nil
}

// lookup returns the precompiled filter when it is the one compileSeccomp
// would produce for caps on a kernel of version kernel.
func (p *precompiledSeccomp) lookup(caps []string, kernel [2]int) ([]unix.SockFilter, bool) {
	if p == nil || !sameSet(caps, p.caps) {
		return nil, false
	}
	if kernel[0] < p.minKernel[0] || kernel[0] == p.minKernel[0] && kernel[1] < p.minKernel[1] {
		return nil, false
	}
	return slices.Clone(p.filter), true
}

// sameSet reports whether a and b hold the same strings, in any order and
// with any repetition (the profile only asks whether a capability is in
// the set).
func sameSet(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			return false
		}
	}
	return true
}
