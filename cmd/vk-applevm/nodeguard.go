package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/vk-applevm/vk-applevm/internal/rootlock"
)

// nodeGuard keeps CLI commands off what a running node owns. CLI
// containers share a state root with a node safely: the node leaves VMs
// labelled labelCLI alone, their addresses are keyed apart from pods', and
// both plug into the root's one switch, whichever namespace started it. A
// pod's VM and the network as a whole are the node's, so a command that
// would act on them takes the root's lock first (rootlock): with a node
// running it refuses before changing anything, and no node starts while
// it runs.
type nodeGuard struct {
	root string
	lock *rootlock.Lock
}

// take acquires the root's lock once; why says what needs it.
func (g *nodeGuard) take(why string) error {
	if g.lock != nil {
		return nil
	}
	if err := os.MkdirAll(g.root, 0o700); err != nil {
		return fmt.Errorf("create state root: %w", err)
	}
	l, err := rootlock.Acquire(g.root)
	if errors.Is(err, rootlock.ErrHeld) {
		return fmt.Errorf("%s, and %w: delete pods with kubectl, or stop the node first", why, err)
	}
	if err != nil {
		return err
	}
	g.lock = l
	return nil
}

func (g *nodeGuard) release() {
	if g.lock != nil {
		_ = g.lock.Release()
		g.lock = nil
	}
}
