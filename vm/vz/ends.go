package vz

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vk-applevm/vk-applevm/vm/consolelog"
)

// The host-side descriptors a machine hands to Virtualization.framework.
// Nothing here calls vz, so it is tested on every platform.

// hostEnds holds every descriptor handed to vz. They stay referenced until
// the machine stops: an *os.File's finalizer would close a descriptor vz
// still uses (Lima keeps its socketpair files for the same reason).
type hostEnds struct {
	// ports are the host-facing pipe ends, handed out once by Port.
	ports map[string]*portEnds
	// vzSide are the ends vz reads and writes, NIC sockets, and cleanups.
	vzSide []io.Closer
	// consoleDone is closed once the console log holds all the guest
	// printed (nil without a console).
	consoleDone chan struct{}
}

func newHostEnds() *hostEnds { return &hostEnds{ports: map[string]*portEnds{}} }

// portEnds is the host side of one console port.
type portEnds struct {
	fromGuest *os.File // read: what the guest writes to the port
	toGuest   *os.File // write: what the guest reads from the port
}

func (p *portEnds) Read(b []byte) (int, error)  { return p.fromGuest.Read(b) }
func (p *portEnds) Write(b []byte) (int, error) { return p.toGuest.Write(b) }
func (p *portEnds) Close() error {
	return errors.Join(p.toGuest.Close(), p.fromGuest.Close())
}

// addPort creates the two pipes of a console port and returns the ends vz
// uses: guestIn, which vz reads and forwards to the guest, and guestOut,
// which vz writes with what the guest sends.
func (h *hostEnds) addPort(name string) (guestIn, guestOut *os.File, err error) {
	guestIn, toGuest, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("port %s: %w", name, err)
	}
	fromGuest, guestOut, err := os.Pipe()
	if err != nil {
		guestIn.Close()
		toGuest.Close()
		return nil, nil, fmt.Errorf("port %s: %w", name, err)
	}
	h.vzSide = append(h.vzSide, guestIn, guestOut)
	h.ports[name] = &portEnds{fromGuest: fromGuest, toGuest: toGuest}
	return guestIn, guestOut, nil
}

// addConsole creates the serial console's pipes and returns the ends vz
// uses. What the guest prints is copied into the capped log at path
// (vm/consolelog) until vz's end closes; vz's own file attachment would
// grow the file for the machine's whole life. The guest reads nothing:
// the input pipe's write end is held open and never written.
func (h *hostEnds) addConsole(path string, maxSize int64, log *slog.Logger) (guestIn, guestOut *os.File, err error) {
	guestIn, noInput, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	fromGuest, guestOut, err := os.Pipe()
	if err != nil {
		guestIn.Close()
		noInput.Close()
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	h.vzSide = append(h.vzSide, noInput, guestIn, guestOut)
	h.consoleDone = make(chan struct{})
	go func() {
		defer close(h.consoleDone)
		if err := consolelog.Copy(fromGuest, path, maxSize, log); err != nil {
			log.Warn("console log", "err", err)
		}
	}()
	return guestIn, guestOut, nil
}

// waitConsole waits, at most bound, for the console log to be complete
// after closeVZSide.
func (h *hostEnds) waitConsole(bound time.Duration) {
	if h.consoleDone == nil {
		return
	}
	select {
	case <-h.consoleDone:
	case <-time.After(bound):
	}
}

// keep holds f (a NIC's socket) until the machine stops.
func (h *hostEnds) keep(f *os.File) { h.vzSide = append(h.vzSide, f) }

// closeVZSide releases what vz used, once the machine has stopped, so
// readers of the ports see EOF. Descriptors go first, then socket files.
func (h *hostEnds) closeVZSide() {
	for i := len(h.vzSide) - 1; i >= 0; i-- {
		h.vzSide[i].Close()
	}
	h.vzSide = nil
}

// closeAll is for a machine that never started.
func (h *hostEnds) closeAll() {
	h.closeVZSide()
	for _, p := range h.ports {
		p.Close()
	}
	h.ports = nil
}
