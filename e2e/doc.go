// Package e2e holds the end-to-end tests: real VMs booted through the
// vk-applevm binary (cli_test.go) and a real Kubernetes control plane
// driving the node (node_linux_test.go).
//
// The CLI cases are shared by two harnesses: on Linux (harness_linux_test.go)
// they run as root under QEMU, with the CLI in a test network namespace, and
// need the guest bundle (`make guest`); on a Mac with Apple silicon
// (harness_darwin_test.go) they run under Virtualization.framework with the
// CLI run directly, and need the vz bundle (`make guest-darwin`). `make
// test` prepares everything on either.
package e2e
