package rootlock

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestSecondHolderRefusedUntilReleased(t *testing.T) {
	root := t.TempDir()
	l, err := Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	// flock excludes other open file descriptions, in this process too.
	_, err = Acquire(root)
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Acquire: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(root)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
}

// A child process started while the lock is held must not inherit it: the
// VMs' helpers outlive the node.
func TestChildrenDoNotInheritTheLock(t *testing.T) {
	root := t.TempDir()
	l, err := Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	l.Release()
	l2, err := Acquire(root)
	if err != nil {
		t.Fatalf("a child kept the lock: %v", err)
	}
	l2.Release()
}
