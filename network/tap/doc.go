// Package tap creates persistent Linux tap devices and opens them the way a
// hypervisor does (TUNSETIFF with IFF_TAP|IFF_NO_PI on /dev/net/tun).
//
// A tap device lives in the network namespace of the thread that opened
// /dev/net/tun, so every function here takes the namespace's path and does
// its work inside it (network/netns.Do). The QEMU backend can use Open to
// hand QEMU a ready descriptor (-netdev tap,fd=N) instead of entering the
// namespace itself. The package is Linux-only; on other systems it is empty.
package tap
