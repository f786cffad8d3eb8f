package podworker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pruneInstanceLogs removes the logs of a container's instances older than
// the one before current, as the kubelet's container garbage collection
// keeps one dead container (and so one previous log) per container:
// `kubectl logs --previous` still works, and a crash-looping container
// holds at most two log sets, not one per restart.
func pruneInstanceLogs(dir string, current int32) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		name := e.Name()
		i := strings.Index(name, ".log")
		if i <= 0 {
			continue
		}
		n, err := strconv.ParseInt(name[:i], 10, 32)
		if err != nil || int32(n) >= current-1 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
