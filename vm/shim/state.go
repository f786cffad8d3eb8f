package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Status is the machine's phase as the shim saw it last.
type Status string

const (
	// StatusStarting: the shim runs and is booting the machine.
	StatusStarting Status = "starting"
	// StatusRunning: the hypervisor runs and the ports are served; the
	// guest agent may still be booting (agent/client.WaitReady tells).
	StatusRunning Status = "running"
	// StatusStopped: the machine has stopped (or never started); final.
	StatusStopped Status = "stopped"
)

// State is the content of state.json, which the shim rewrites atomically on
// every change. Start times identify processes across pid reuse: a pid whose
// current start time differs is another process.
type State struct {
	ID     string `json:"id"`
	Driver string `json:"driver"`
	Status Status `json:"status"`
	// ShimPid is the shim process; ShimStartTime its start time in the
	// platform's units (clock ticks since boot on Linux, microseconds since
	// the epoch on darwin).
	ShimPid       int    `json:"shimPid"`
	ShimStartTime uint64 `json:"shimStartTime"`
	// HypervisorPid is Machine.Pid (QEMU, or the shim itself under vz).
	HypervisorPid       int       `json:"hypervisorPid,omitempty"`
	HypervisorStartTime uint64    `json:"hypervisorStartTime,omitempty"`
	StartedAt           time.Time `json:"startedAt,omitzero"`
	StoppedAt           time.Time `json:"stoppedAt,omitzero"`
	// Error says why the machine stopped or failed to start; empty for a
	// power-off by the guest.
	Error string `json:"error,omitempty"`
}

// Running reports whether the machine may still be running.
func (s State) Running() bool { return s.Status != StatusStopped }

// ErrShimDead reports a machine directory whose shim is gone without having
// recorded that the machine stopped (it was killed or crashed). The machine
// died with it; Client.Delete cleans up.
var ErrShimDead = errors.New("shim is not running")

// ErrNoState reports a directory that is not (or not yet) a machine
// directory.
var ErrNoState = errors.New("no shim state")

func readState(dir string) (State, error) {
	var st State
	path := filepath.Join(dir, stateFile)
	err := readJSON(path, &st)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, fmt.Errorf("%w in %s", ErrNoState, dir)
	}
	if fi, serr := os.Stat(path); err != nil && serr == nil && fi.Size() == 0 {
		// Only a host crash right after a write leaves it empty (state
		// writes are not fsynced; writeJSONAtomic): nothing of the
		// machine runs.
		return State{}, fmt.Errorf("%w in %s (empty state file)", ErrNoState, dir)
	}
	return st, err
}

func writeState(dir string, st State) error {
	return writeJSONAtomic(filepath.Join(dir, stateFile), st)
}
