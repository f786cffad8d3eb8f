package node

import (
	"context"
	"sync"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider"
)

// stubRuntime is a provider.Runtime with no VMs whose health is scripted.
// The node's tests run no pods, so image and VM creation are left to the
// embedded nil interface (a call would panic and show up at once).
type stubRuntime struct {
	provider.Runtime
	mu       sync.Mutex
	checkErr error
}

func (r *stubRuntime) setCheck(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkErr = err
}

func (r *stubRuntime) Check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkErr
}

func (r *stubRuntime) Sandbox(context.Context, string) (provider.Sandbox, error) {
	return nil, container.ErrNotFound
}

func (r *stubRuntime) Sandboxes(context.Context) ([]provider.Sandbox, error) { return nil, nil }
