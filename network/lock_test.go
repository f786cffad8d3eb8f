package network

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A wait for a lock someone holds (another process, or another goroutine
// with its own open of the file) gives up with its context.
func TestLockWaitEndsWithTheContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	unlock, err := LockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := LockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want the context's deadline", err)
	}
}
