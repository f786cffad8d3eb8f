package security

import (
	"fmt"
	"strconv"
	"strings"
)

// safeSysctls is the kubelet's safe set (pkg/kubelet/sysctl/safe_sysctls.go):
// namespaced in the container's IPC namespace or in the VM's network
// namespace, which only this container's VM uses.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true,
	"net.ipv4.tcp_wmem":                   true,
}

// NormalizeSysctl turns the slash form ("net/ipv4/tcp_syncookies") into the
// dotted one, as the kubelet does.
func NormalizeSysctl(name string) string {
	if strings.Contains(name, "/") && !strings.Contains(name, ".") {
		return strings.ReplaceAll(name, "/", ".")
	}
	return name
}

// CheckSysctl accepts a sysctl of the safe set with a value of the shape
// its file takes (numbers separated by blanks, or for
// ip_local_reserved_ports a list of ports and ranges); the kernel checks
// the rest when it is written.
func CheckSysctl(name, value string) error {
	name = NormalizeSysctl(name)
	if !safeSysctls[name] {
		return fmt.Errorf("forbidden sysctl: %q not allowlisted (this node allows only the kubelet's safe set)", name)
	}
	v := strings.TrimSpace(value)
	if name == "net.ipv4.ip_local_reserved_ports" {
		if v == "" {
			return nil
		}
		for _, part := range strings.Split(v, ",") {
			for _, n := range strings.Split(part, "-") {
				if _, err := strconv.ParseUint(strings.TrimSpace(n), 10, 16); err != nil {
					return fmt.Errorf("sysctl %s: %q is not a list of ports and port ranges", name, value)
				}
			}
		}
		return nil
	}
	fields := strings.Fields(v)
	want := 1
	switch name {
	case "net.ipv4.ip_local_port_range", "net.ipv4.ping_group_range":
		want = 2
	case "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem":
		want = 3
	}
	if len(fields) != want {
		return fmt.Errorf("sysctl %s: %q must be %d number(s)", name, value, want)
	}
	for _, f := range fields {
		if _, err := strconv.ParseInt(f, 10, 64); err != nil {
			return fmt.Errorf("sysctl %s: %q is not a number", name, f)
		}
	}
	return nil
}

// PortRangeWithin checks that a pod's net.ipv4.ip_local_port_range stays
// inside the VM's (vm, as the file reads): the VMs of a pod share its
// address and split the ephemeral range between them, so a wider range
// would take ports another VM of the pod may use.
func PortRangeWithin(value, vm string) error {
	lo, hi, err := portRange(value)
	if err != nil {
		return err
	}
	vlo, vhi, err := portRange(vm)
	if err != nil {
		return fmt.Errorf("read the VM's port range: %w", err)
	}
	if lo > hi || lo < vlo || hi > vhi {
		return fmt.Errorf("sysctl net.ipv4.ip_local_port_range %d-%d is outside this container's share of the pod's ephemeral ports (%d-%d): the containers of a pod share its address and each VM gets a disjoint range", lo, hi, vlo, vhi)
	}
	return nil
}

func portRange(s string) (lo, hi uint64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("port range %q: want two numbers", s)
	}
	if lo, err = strconv.ParseUint(f[0], 10, 16); err == nil {
		hi, err = strconv.ParseUint(f[1], 10, 16)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("port range %q: %w", s, err)
	}
	return lo, hi, nil
}
