package container

import (
	"fmt"
	"os"

	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
)

// processRSS is the resident memory of a host process (the hypervisor).
func processRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	f, err := hostinfo.ParseKBFields(b, "VmRSS")
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return f["VmRSS"], nil
}
