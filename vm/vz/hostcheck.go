package vz

import (
	"errors"
	"fmt"
	"strings"
)

// ErrIntelMac means the Mac has an Intel CPU: Virtualization.framework runs
// guests of the host's own architecture, and the guests here are arm64, so
// every VM would fail to boot. Check says so once instead.
var ErrIntelMac = errors.New("this Mac has an Intel CPU: vk-applevm runs arm64 Linux guests, which need Apple silicon (M1 or later)")

// checkCPU refuses hardware without arm64 cores. arm64Hardware is the
// sysctl hw.optional.arm64, which is 1 on Apple silicon even for a process
// translated by Rosetta, and absent on Intel Macs.
func checkCPU(arm64Hardware bool) error {
	if !arm64Hardware {
		return fmt.Errorf("vz: %w", ErrIntelMac)
	}
	return nil
}

// isEntitlementError tells the framework's refusal for a binary without
// the virtualization entitlement by the entitlement's name, which the
// localized message quotes in every language ("The process doesn’t have
// the “com.apple.security.virtualization” entitlement.", VZErrorDomain
// code 2; crc-org/vfkit#91), rather than by English words.
func isEntitlementError(msg string) bool {
	return strings.Contains(msg, "com.apple.security.virtualization")
}
