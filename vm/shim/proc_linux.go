package shim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// processStartTime returns the start time of pid in clock ticks since boot:
// field 22 of /proc/<pid>/stat (proc(5)). Zombies count as gone.
func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, errProcessGone)
	}
	// comm (field 2) may hold spaces and parentheses; the fields after it
	// start behind the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	if s := fields[0]; len(s) == 1 && (s[0] == 'Z' || s[0] == 'X') {
		return 0, fmt.Errorf("process %d is a zombie: %w", pid, errProcessGone)
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse start time in /proc/%d/stat: %w", pid, err)
	}
	return start, nil
}
