// Package rootlock keeps one node per state root: two nodes on one root
// would each take the other's VMs for orphans and delete them.
package rootlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// File is the lock's name in the state root.
const File = "node.lock"

// ErrHeld is returned when another process holds the lock.
var ErrHeld = errors.New("the state root is in use by another node")

// HeldError is ErrHeld with who holds the lock: the pid the holder wrote
// into it (0 when unreadable).
type HeldError struct {
	Path string
	Pid  int
}

func (e *HeldError) Error() string {
	holder := "another process"
	if e.Pid > 0 {
		holder = "pid " + strconv.Itoa(e.Pid)
	}
	return fmt.Sprintf("%v (%s holds %s)", ErrHeld, holder, e.Path)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Lock is a held lock; the kernel drops it when the process dies, so a
// node killed with -9 does not lock out its successor.
type Lock struct{ f *os.File }

// Acquire takes the root's lock without waiting, and writes this process's
// pid into it for the error a second holder gets (a *HeldError). The node
// holds it for its life; CLI commands that act on what a node owns (its
// pods' VMs, the network) hold it while they run, so they refuse to run
// beside a node and a node refuses to start beside them.
func Acquire(root string) (*Lock, error) {
	path := filepath.Join(root, File)
	// O_CLOEXEC (Go's default) matters: the node's children (the VMs'
	// helpers, the switch) outlive it and must not keep its lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the state root's lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			held := &HeldError{Path: path}
			if b, err := os.ReadFile(path); err == nil {
				held.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			return nil, held
		}
		return nil, fmt.Errorf("lock the state root %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error { return l.f.Close() }
