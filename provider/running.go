package provider

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// runningContainer is one container with a live VM, for stats.
type runningContainer struct {
	Namespace, Pod string
	UID            types.UID
	Container      string
	Sandbox        Sandbox
	// StartedAt is when the current instance started; PodStart when the
	// pod was first acknowledged.
	StartedAt, PodStart time.Time
}

// runningContainers lists the containers that currently run in a VM.
func (p *Provider) runningContainers() []runningContainer {
	p.mu.Lock()
	workers := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		workers = append(workers, w)
	}
	p.mu.Unlock()
	var out []runningContainer
	for _, w := range workers {
		w.mu.Lock()
		for _, c := range append(append([]*ctrState{}, w.inits...), w.apps...) {
			sb := w.sandboxes[c.Name]
			if sb == nil || c.Running == nil {
				continue
			}
			out = append(out, runningContainer{
				Namespace: w.namespace, Pod: w.name, UID: w.uid, Container: c.Name, Sandbox: sb,
				StartedAt: c.Running.StartedAt.Time, PodStart: w.meta.startTime,
			})
		}
		w.mu.Unlock()
	}
	return out
}
