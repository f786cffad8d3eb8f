package qemu

import (
	"sync"

	"golang.org/x/sys/unix"
)

// QEMU madvises guest RAM for transparent huge pages. On the 2-core TCG
// machines this backend serves, that made consecutive boots alternate by
// ±5 % (a VM that found huge pages, then one that waited for them;
// hack/bench, 2026-11-29: floor 1470/1620 ms alternating, 1530-1600 ms
// with THP off) and added ~7 MiB of RSS per idle VM. Guest RAM shared
// through memfd (VMs with shares) never had huge pages, so turning THP
// off also gives every VM the same memory behaviour. PR_SET_THP_DISABLE
// covers the calling process and is inherited by QEMU across fork and
// exec; the shim (or any other process running this driver) is the
// caller, and its own Go heap does not need huge pages either.
var disableTHP = sync.OnceValue(func() error {
	return unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
})
