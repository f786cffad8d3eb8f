package agent_test

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent"
)

// The verifier returns EAGAIN when a signal is pending, and the agent, a
// reaper, gets SIGCHLD on any thread whenever a process exits. Loading
// the filter while signals rain on the process must still succeed, and
// on the first try: the loading thread blocks signals, so the verifier
// is never interrupted (a bounded reload alone ran out in CI).
func TestDeviceFilterLoadsWhileSignalled(t *testing.T) {
	t.Cleanup(agent.SetBPFLoadAttempts(1))
	dir, err := os.MkdirTemp(cgroupRoot, "vkav-devices-test-")
	if err != nil {
		t.Fatalf("a cgroup for the test: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGCHLD)
	defer signal.Stop(signals)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-signals:
			default:
				_ = syscall.Kill(os.Getpid(), syscall.SIGCHLD)
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	n := 0
	for ; time.Now().Before(deadline); n++ {
		if err := agent.LimitDevices(fd); err != nil {
			close(stop)
			<-done
			t.Fatalf("load %d: %v", n+1, err)
		}
	}
	close(stop)
	<-done
	t.Logf("%d loads under signals in %s", n, filepath.Base(dir))
}
