// Package initrdpath names the files in the guest's initrd that the host
// writes (package guest, building the bundle) and the agent reads at boot.
// It is the one place both sides take them from: the agent may not import
// package guest (host-side), and package guest importing package agent
// would link the agent's gRPC server, transport and seccomp code into
// every host binary that builds or finds a bundle. It imports nothing.
package initrdpath

const (
	// ModulesDir holds the kernel modules the agent loads.
	ModulesDir = "/lib/vkav/modules"
	// ModulesList names the modules in ModulesDir (relative to it), one a
	// line, in load order.
	ModulesList = "/lib/vkav/modules.list"
	// PageReportingOrderFile holds the free page reporting order the guest
	// bundle chose (guest.PageReportingOrder), which the agent sets once
	// its modules have loaded.
	PageReportingOrderFile = "/lib/vkav/page_reporting_order"
)
