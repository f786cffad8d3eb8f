package container

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// processRSS is the resident memory of a host process. Without cgo there is
// no proc_pidinfo, so ps answers.
func processRSS(pid int) (uint64, error) {
	out, err := exec.Command("ps", "-o", "rss=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return 0, fmt.Errorf("ps rss of %d: %w", pid, err)
	}
	kb, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse ps rss of %d: %w", pid, err)
	}
	return kb << 10, nil
}
