// Package security holds what the host and the guest agent must agree on
// about a container's isolation: capability names and numbers, the
// container runtime's default capability set and Kubernetes' add/drop
// arithmetic, and the namespaced sysctls a pod may set. It is a leaf
// (standard library only) so both sides import it.
package security

import (
	"fmt"
	"slices"
	"strings"
)

// Capabilities are the Linux capabilities by number
// (include/uapi/linux/capability.h, up to CAP_CHECKPOINT_RESTORE, Linux 5.9).
var Capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// DefaultCapabilities is containerd's and moby's default set
// (containerd pkg/oci defaultUnixCaps), in its order; as a mask it is
// 0xa80425fb.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// CapabilityNumber returns the number of a capability named "CAP_X",
// "X" or "x".
func CapabilityNumber(name string) (int, bool) {
	i := slices.Index(Capabilities, canonical(name))
	return i, i >= 0
}

func canonical(name string) string {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	return n
}

// Mask is the bit mask of a list of capability names (as in
// /proc/PID/status CapEff); unknown names are an error.
func Mask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		i, ok := CapabilityNumber(n)
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		m |= 1 << i
	}
	return m, nil
}

// Adjust applies a container's capabilities.add and .drop to the default
// set as containerd's CRI does (WithCapabilities): "ALL" in add starts
// from every capability, "ALL" in drop from none, then the named adds and
// the named drops apply in that order (so drop wins over add). Names may
// omit the CAP_ prefix and are case-insensitive, as Docker's are. The
// result is in capability-number order.
func Adjust(add, drop []string) ([]string, error) {
	set := map[string]bool{}
	for _, c := range DefaultCapabilities {
		set[c] = true
	}
	isAll := func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "ALL") }
	if slices.ContainsFunc(add, isAll) {
		for _, c := range Capabilities {
			set[c] = true
		}
	}
	if slices.ContainsFunc(drop, isAll) {
		clear(set)
	}
	for _, list := range []struct {
		names []string
		keep  bool
	}{{add, true}, {drop, false}} {
		for _, n := range list.names {
			if isAll(n) {
				continue
			}
			c := canonical(n)
			if !slices.Contains(Capabilities, c) {
				return nil, fmt.Errorf("unknown capability %q", n)
			}
			if list.keep {
				set[c] = true
			} else {
				delete(set, c)
			}
		}
	}
	out := make([]string, 0, len(set))
	for _, c := range Capabilities {
		if set[c] {
			out = append(out, c)
		}
	}
	return out, nil
}
