// Package e2e holds the end-to-end tests: real VMs booted through the
// vk-applevm binary (cli_test.go) and a real Kubernetes control plane
// driving the node (node_test.go). They run as root on Linux and need the
// guest bundle (`make guest`); `make test` prepares everything.
package e2e
