package node

import (
	"context"
	"sync"

	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
)

// stubRuntime is a vmruntime.Runtime with no VMs whose health is scripted.
// The node's tests run no pods, so image and VM creation are left to the
// embedded nil interface (a call would panic and show up at once).
type stubRuntime struct {
	vmruntime.Runtime
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

func (r *stubRuntime) VMs(context.Context) ([]vmruntime.VM, error) { return nil, nil }
