package shim

import (
	"errors"
	"fmt"
	"sync"
)

// maxRegisteredLogs bounds the log names registered at once. The node
// registers one per logged process it starts and the guest's end frame
// releases it, so a machine holds a handful; the bound only stops a runaway
// caller from growing the shim without limit.
const maxRegisteredLogs = 1024

// ErrTooManyLogs is returned when maxRegisteredLogs names are registered.
var ErrTooManyLogs = errors.New("too many registered logs")

// logNames is the set of log names the host has registered (RegisterLog),
// the only ones the shim writes a file for. The guest names a log in every
// frame it sends; without this set a guest could make the shim open one
// file per name it invents, past rotation and the descriptor limit. The
// API registers, the log pump checks and releases at a log's end frame.
type logNames struct {
	mu    sync.Mutex
	names map[string]bool
}

func newLogNames() *logNames { return &logNames{names: map[string]bool{}} }

// register allows the guest to write the log called name until it ends it.
func (n *logNames) register(name string) error {
	if err := validLogName(name); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.names[name] && len(n.names) >= maxRegisteredLogs {
		return fmt.Errorf("register log %q: %w (%d)", name, ErrTooManyLogs, maxRegisteredLogs)
	}
	n.names[name] = true
	return nil
}

func (n *logNames) registered(name string) bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.names[name]
}

// release forgets name: its log has ended. A later process that logs under
// the same name is registered again by the node.
func (n *logNames) release(name string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.names, name)
}
