package main

const (
	hypervisorFix = "sign the binaries with the virtualization entitlement (make sign), on Apple silicon with macOS 13 or later"
	guestFix      = "fetch the kernel and build the initrd (make guest-darwin, or vk-applevm kernel fetch)"
)
