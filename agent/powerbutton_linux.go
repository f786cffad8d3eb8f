package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// SysClassInput is where the kernel lists input devices and their evdev
// handlers (eventN).
const SysClassInput = "/sys/class/input"

const (
	// powerButtonRetry paces the search for a button that is not there yet
	// when the modules are done (a driver that probes asynchronously), for
	// up to powerButtonWait; then it gives up and containers go ahead.
	powerButtonRetry = 20 * time.Millisecond
	powerButtonWait  = time.Second
	// powerButtonGrace is the SIGTERM-to-SIGKILL time of a shutdown by the
	// power button, which carries no grace period of its own: the host
	// presses it when it could not ask the agent (vm/shim stopGracefully),
	// and kills the VM at the end of its grace, 10 s by default
	// (shim.DefaultStopGrace), so the guest keeps 2 s of that to sync,
	// unmount and power off, as the shim's guestGrace does.
	powerButtonGrace = 8 * time.Second
)

// PowerButton watches the guest's power buttons: the ACPI button that
// QEMU's system_powerdown presses (vm.Machine.RequestStop), or whatever
// input device the platform's stop request presses.
type PowerButton struct {
	sysDir, devDir string
	log            *slog.Logger
	presses        chan struct{}
	found          chan struct{} // closed when the first button is open
	searched       chan struct{} // closed when the search has ended
	foundOnce      sync.Once

	mu      sync.Mutex
	watched map[string]bool // eventN
}

// WatchPowerButton looks for power buttons among the input devices under
// sysDir (SysClassInput) once modulesDone closes, and opens each one's
// /dev/input/eventN under devDir, creating the node from sysfs when
// devtmpfs has not.
//
// Not before: the button's modules (button, evdev) load last, in the
// background, and boot does not wait for them. Opening the button before
// serving cost 30-45 ms of every boot under TCG, and polling sysfs while
// modules load takes CPU from the agent's start (hack/bench; the agent's
// boot went from 1.08x to 0.99x of the floor without both). Nothing waits
// for the search: the host asks the agent to shut down and presses the
// button only when the agent cannot be asked (QEMU; vz on Apple silicon
// has no button the pinned kernel can see), so a press before the button
// is open is lost only when the agent is unreachable anyway.
func WatchPowerButton(ctx context.Context, sysDir, devDir string, modulesDone <-chan struct{}, log *slog.Logger) *PowerButton {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &PowerButton{
		sysDir: sysDir, devDir: devDir, log: log,
		presses: make(chan struct{}, 1), found: make(chan struct{}), searched: make(chan struct{}),
		watched: map[string]bool{},
	}
	go b.search(ctx, modulesDone)
	return b
}

// Presses delivers the presses; one that comes while another is pending
// is merged with it.
func (b *PowerButton) Presses() <-chan struct{} { return b.presses }

// Wait blocks until a power button is open, the search ended without one,
// ctx ends or timeout passes, and reports whether one is open.
func (b *PowerButton) Wait(ctx context.Context, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-b.found:
		return true
	case <-b.searched:
	case <-ctx.Done():
	case <-t.C:
	}
	select {
	case <-b.found:
		return true
	default:
		return false
	}
}

// Searched closes when the search has ended, with a button open or not.
func (b *PowerButton) Searched() <-chan struct{} { return b.searched }

func (b *PowerButton) search(ctx context.Context, modulesDone <-chan struct{}) {
	defer close(b.searched)
	select {
	case <-ctx.Done():
		return
	case <-modulesDone:
	}
	deadline := time.Now().Add(powerButtonWait)
	for {
		b.scan(ctx)
		select {
		case <-b.found:
			return
		default:
		}
		if time.Now().After(deadline) {
			b.log.Warn("no power button input device: the host's stop request (ACPI power button) cannot reach the agent")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(powerButtonRetry):
		}
	}
}

// scan opens every power button not watched yet.
func (b *PowerButton) scan(ctx context.Context) {
	entries, err := os.ReadDir(b.sysDir)
	if err != nil {
		return // sysfs not there (yet)
	}
	for _, e := range entries {
		name := e.Name()
		b.mu.Lock()
		seen := b.watched[name]
		b.mu.Unlock()
		if seen || !inputEventName(name) {
			continue
		}
		dev := filepath.Join(b.sysDir, name, "device")
		ev, err1 := os.ReadFile(filepath.Join(dev, "capabilities", "ev"))
		key, err2 := os.ReadFile(filepath.Join(dev, "capabilities", "key"))
		if err1 != nil || err2 != nil || !isPowerButton(string(ev), string(key)) {
			continue
		}
		label, _ := os.ReadFile(filepath.Join(dev, "name"))
		f, err := openInputNode(b.sysDir, b.devDir, name)
		if err != nil {
			b.log.Error("open power button", "device", name, "name", strings.TrimSpace(string(label)), "err", err)
			continue
		}
		b.mu.Lock()
		b.watched[name] = true
		b.mu.Unlock()
		b.log.Info("watching power button", "device", name, "name", strings.TrimSpace(string(label)))
		go b.read(ctx, name, f)
		b.foundOnce.Do(func() { close(b.found) })
	}
}

func (b *PowerButton) read(ctx context.Context, name string, f *os.File) {
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	err := readPowerPresses(f, func() {
		b.log.Info("power button pressed", "device", name)
		select {
		case b.presses <- struct{}{}:
		default:
		}
	})
	if ctx.Err() == nil {
		b.log.Warn("power button reader stopped", "device", name, "err", err)
	}
}

// openInputNode opens devDir/input/<name>; when devtmpfs has not made the
// node, it creates it from the device numbers in sysfs (<sysDir>/<name>/dev,
// "major:minor").
func openInputNode(sysDir, devDir, name string) (*os.File, error) {
	node := filepath.Join(devDir, "input", name)
	f, err := os.OpenFile(node, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	b, err := os.ReadFile(filepath.Join(sysDir, name, "dev"))
	if err != nil {
		return nil, fmt.Errorf("create %s: device numbers: %w", node, err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	major, err1 := strconv.ParseUint(maj, 10, 32)
	minor, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("create %s: bad device numbers %q", node, b)
	}
	if err := os.MkdirAll(filepath.Dir(node), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", node, err)
	}
	err = unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(major), uint32(minor))))
	if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: devtmpfs was quicker
		return nil, fmt.Errorf("create %s: %w", node, err)
	}
	return os.OpenFile(node, os.O_RDONLY|unix.O_CLOEXEC, 0)
}

// handlePowerButton turns the first press into Shutdown, the path the
// host's Shutdown request takes: SIGTERM to the containers, the grace
// period, SIGKILL, then PowerOff (sync, unmount, power off).
func (s *Server) handlePowerButton(presses <-chan struct{}) {
	select {
	case <-presses:
	case <-s.ctx.Done():
		return
	}
	if s.shuttingDown.Load() {
		s.log.Info("power button pressed during shutdown: nothing more to do")
		return
	}
	s.log.Info("power button pressed: shutting down", "grace", powerButtonGrace)
	if _, err := s.Shutdown(s.ctx, &api.ShutdownRequest{GracePeriodNs: int64(powerButtonGrace)}); err != nil {
		s.log.Error("shutdown on power button", "err", err)
	}
}
