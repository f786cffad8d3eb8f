// Package netns creates, enters and removes named Linux network namespaces
// the way iproute2 does (a bind mount of the namespace under /run/netns), so
// `ip netns exec` and `ip -n` work on them for humans too.
//
// A namespace belongs to a thread, not to a process: Do runs a function on a
// fresh OS thread moved into the namespace, and if that thread cannot be
// moved back it is discarded rather than returned to the Go scheduler. The
// package is Linux-only; on other systems it is empty.
package netns
