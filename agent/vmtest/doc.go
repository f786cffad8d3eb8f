// Package vmtest holds the guest agent's tests that need real VMs: shared
// directories (virtio-fs) between VMs and the host, and the ACPI power
// button. Each test boots Debian's cloud kernel with the real agent as
// /init under QEMU (TCG unless VKAV_ACCEL=kvm), through the per-VM shim,
// with a busybox root filesystem; the test binary re-executes itself as
// the shim. It has only tests; run them as root:
//
//	go test ./agent/vmtest/
package vmtest
