package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Port is the guest end of a console port.
type Port interface {
	// Connect waits until the host side is connected and returns a
	// connection for one session; the session closes it when it ends (the
	// host went away), and the listener then calls Connect again.
	Connect(ctx context.Context) (io.ReadWriteCloser, error)
}

// PortFunc adapts a function to Port.
type PortFunc func(ctx context.Context) (io.ReadWriteCloser, error)

// Connect calls f.
func (f PortFunc) Connect(ctx context.Context) (io.ReadWriteCloser, error) { return f(ctx) }

const (
	// helloInterval paces the repeats of a hello the host has not acked.
	helloInterval = 500 * time.Millisecond
	// padTimeout bounds completing a half-written frame at a session's end.
	padTimeout = time.Second
	// guestReadBuffer holds the handshake and what follows it.
	guestReadBuffer = 4 << 10
)

// connectRetryDelay paces retries after a failed Connect (e.g. the device
// node vanished for a moment); short because the host is waiting.
const connectRetryDelay = 100 * time.Millisecond

// Listener yields every yamux stream the host opens as a net.Conn, across
// host reconnects: when the host disconnects or resets the session, the
// port is opened afresh, the guest says hello again (same boot nonce, next
// session number) and a fresh session is served once the host acks.
type Listener struct {
	port   Port
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	done   chan struct{}

	nonce      [16]byte
	helloEvery time.Duration
	connects   atomic.Int64
	sessions   atomic.Int64
}

var _ net.Listener = (*Listener)(nil)

// Listen starts serving sessions over port until ctx ends or Close.
func Listen(ctx context.Context, port Port, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Listener{
		port:   port,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),

		helloEvery: helloInterval,
	}
	// The nonce tells the host this boot's sessions from an earlier boot's.
	// It needs to differ between boots, not to be secret: math/rand's
	// generator is seeded by the runtime from the random bytes the kernel
	// gives every process at exec. crypto/rand's getrandom(2) blocks until
	// the kernel's CRNG is seeded, which under TCG came 1.35 s after /init,
	// and every container start waited for it (agent-ready 1.40× the floor).
	binary.LittleEndian.PutUint64(l.nonce[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(l.nonce[8:], rand.Uint64())
	go l.run()
	return l
}

func (l *Listener) run() {
	defer close(l.done)
	for l.ctx.Err() == nil {
		rwc, err := l.port.Connect(l.ctx)
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			l.log.Warn("connect agent port", "err", err)
			select {
			case <-time.After(connectRetryDelay):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		l.serveSession(rwc)
	}
}

// serveSession says hello on a freshly connected port and hands out the
// streams of the session that follows the host's ack until it ends.
func (l *Listener) serveSession(rwc io.ReadWriteCloser) {
	stopClose := context.AfterFunc(l.ctx, func() { rwc.Close() })
	defer stopClose()
	id := hello{Version: ProtocolVersion, Nonce: l.nonce, Session: uint32(l.connects.Add(1))}
	out := &portWriter{w: rwc}
	r, err := guestHandshake(rwc, out, id, l.helloEvery, l.log)
	if err != nil {
		if l.ctx.Err() == nil {
			l.log.Warn("agent port handshake", "guest", id.String(), "err", err)
		}
		rwc.Close()
		return
	}
	fw := newFrameWriter(out)
	out.mu.Lock()
	out.cur = fw
	out.mu.Unlock()
	sess, err := yamux.Server(&guestConn{r: r, w: fw, c: rwc}, YamuxConfig(l.log))
	if err != nil {
		// Only a bad config fails here; it is ours and fixed.
		l.log.Error("start agent transport session", "err", err)
		rwc.Close()
		return
	}
	n := l.sessions.Add(1)
	l.log.Info("agent transport session started", "session", n, "guest", id.String())
	stop := make(chan struct{})
	go func() {
		select {
		case <-l.ctx.Done():
			sess.Close()
		case <-stop:
		}
	}()
	defer func() {
		close(stop)
		sess.Close()
		l.log.Info("agent transport session ended", "session", n)
	}()
	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			return
		}
		select {
		case l.conns <- stream:
		case <-l.ctx.Done():
			stream.Close()
			return
		}
	}
}

// guestHandshake writes the hello, again every interval until the ack
// comes (a hello the host side lost before it was reading must not stall
// the guest), and discards everything the host sent before the ack: bytes
// of an earlier session, or written before this end was open. It returns
// the reader positioned after the ack.
func guestHandshake(rwc io.ReadWriteCloser, out *portWriter, id hello, every time.Duration, log *slog.Logger) (*bufio.Reader, error) {
	msg := id.encode(helloMagic)
	acked := false
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			out.mu.Lock()
			if acked {
				out.mu.Unlock()
				return
			}
			_, err := out.w.Write(msg)
			out.mu.Unlock()
			if err != nil {
				return // the read side sees the port fail too
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	r := bufio.NewReaderSize(rwc, guestReadBuffer)
	for {
		ack, discarded, err := scanFor(r, ackMagic)
		if discarded > 0 {
			log.Info("agent port: discarded bytes before the host's ack", "bytes", discarded)
		}
		if err != nil {
			return nil, fmt.Errorf("wait for the host's ack: %w", err)
		}
		if ack == id {
			out.mu.Lock()
			acked = true
			out.mu.Unlock()
			return r, nil
		}
		log.Info("agent port: ignoring an ack of an earlier hello", "ack", ack.String())
	}
}

// guestConn is what the guest's yamux session reads and writes.
type guestConn struct {
	r *bufio.Reader
	w *frameWriter
	c io.ReadWriteCloser
}

func (g *guestConn) Read(b []byte) (int, error)  { return g.r.Read(b) }
func (g *guestConn) Write(b []byte) (int, error) { return g.w.Write(b) }

// Close completes a frame half written, so that the hello of the next
// session starts at a frame boundary for the host, and closes the port.
// The deadline keeps a host that stopped reading from holding the guest.
func (g *guestConn) Close() error {
	d, ok := g.c.(interface{ SetWriteDeadline(time.Time) error })
	if ok {
		_ = d.SetWriteDeadline(time.Now().Add(padTimeout))
	}
	err := g.w.cut()
	if ok {
		_ = d.SetWriteDeadline(time.Time{})
	}
	return errors.Join(err, g.c.Close())
}

// Accept returns the next stream the host opened.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("accept agent stream: %w", net.ErrClosed)
	}
}

// Close stops serving and ends the current session.
func (l *Listener) Close() error {
	l.cancel()
	<-l.done
	return nil
}

// Sessions counts the sessions served so far (one per acked hello).
func (l *Listener) Sessions() int { return int(l.sessions.Load()) }

// Addr names the listener.
func (l *Listener) Addr() net.Addr { return portAddr{} }

type portAddr struct{}

func (portAddr) Network() string { return "virtio-port" }
func (portAddr) String() string  { return "vkav.agent" }
