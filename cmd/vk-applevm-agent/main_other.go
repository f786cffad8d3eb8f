//go:build !linux

// Command vk-applevm-agent is the guest agent; it runs only in a Linux
// guest (or on a Linux host for tests).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "vk-applevm-agent: the guest agent runs only on Linux")
	os.Exit(1)
}
