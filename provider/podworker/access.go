package podworker

import (
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/ctrstate"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
)

// What the node's API (logs, exec, attach, port-forward, stats) reads from
// a pod worker.

// Container returns a container's record, by name.
func (w *Worker) Container(name string) (ctrstate.Snapshot, bool) {
	c := w.ctr(name)
	if c == nil {
		return ctrstate.Snapshot{}, false
	}
	return c.rec.Snapshot(), true
}

// ContainerRunning reports whether instance of a container runs now.
func (w *Worker) ContainerRunning(name string, instance int32) bool {
	s, ok := w.Container(name)
	return ok && s.State == ctrstate.Running && s.Instance == instance
}

// FirstApp is the name of the pod's first app container ("" if none).
func (w *Worker) FirstApp() string {
	if len(w.apps) == 0 {
		return ""
	}
	return w.apps[0].rec.Name()
}

// RunningVM returns the VM of a running container and its record; false
// when the container does not run.
func (w *Worker) RunningVM(name string) (vmruntime.VM, ctrstate.Snapshot, bool) {
	c := w.ctr(name)
	if c == nil {
		return nil, ctrstate.Snapshot{}, false
	}
	s := c.rec.Snapshot()
	vm := c.currentVM()
	return vm, s, vm != nil && s.State == ctrstate.Running
}

// ExecConfig is a process like the container's main one (environment,
// user, working directory) running args, with a unique id.
func (w *Worker) ExecConfig(name string, args []string) container.ProcessConfig {
	c := w.ctr(name)
	if c == nil {
		return container.ProcessConfig{Args: args}
	}
	return c.execConfig(args, "exec")
}

// MainProcessID is the id of a container instance's main process.
func MainProcessID(instance int32) string { return processID(instance) }

// Running is a container that runs in a VM now.
type Running struct {
	Container string
	VM        vmruntime.VM
	StartedAt time.Time
}

// Running lists the pod's containers that run in a VM now.
func (w *Worker) Running() []Running {
	var out []Running
	for _, c := range w.containers() {
		if vm, s, ok := w.RunningVM(c.rec.Name()); ok {
			out = append(out, Running{Container: s.Name, VM: vm, StartedAt: s.StartedAt})
		}
	}
	return out
}

// StartTime is when the pod was first acknowledged by the node.
func (w *Worker) StartTime() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.startTime
}
