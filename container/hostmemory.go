package container

import (
	"errors"
	"fmt"
)

// errHostMemoryUnknown: no process is known to hold the VM's memory.
var errHostMemoryUnknown = errors.New("host memory of the VM is unknown")

// hostMemory is the resident memory the VM costs the host, read from the
// process that holds the guest's RAM. QEMU holds it itself (the shim's
// recorded hypervisor pid). Under vz the shim's pid is recorded, but guest
// RAM lives in the framework's XPC service
// (com.apple.Virtualization.VirtualMachine, started by launchd;
// apple/container#1921) and no public interface ties that process to the
// shim that asked for it, so the figure is unknown rather than the shim's.
func hostMemory(driver string, pid int) (uint64, error) {
	if driver == "vz" || pid <= 0 {
		return 0, fmt.Errorf("%s machine (pid %d): %w", driver, pid, errHostMemoryUnknown)
	}
	return processRSS(pid)
}
