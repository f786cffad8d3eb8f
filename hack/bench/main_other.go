//go:build !linux

// Command bench is `make bench`; it boots VMs with QEMU and runs on Linux
// only (see main.go).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: make bench boots QEMU VMs and runs on Linux only")
	os.Exit(1)
}
