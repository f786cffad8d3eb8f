package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

// connectRetryDelay paces retries after a failed Connect (e.g. the device
// node vanished for a moment); short because the host is waiting.
const connectRetryDelay = 100 * time.Millisecond

// Listener yields every yamux stream the host opens as a net.Conn, across
// host reconnects: when the host disconnects, the session is reset and a
// fresh one is served once the host connects again.
type Listener struct {
	port   Port
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	done   chan struct{}

	sessions atomic.Int64
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
	}
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

// serveSession hands out the streams of one session until it ends.
func (l *Listener) serveSession(rwc io.ReadWriteCloser) {
	sess, err := yamux.Server(rwc, YamuxConfig(l.log))
	if err != nil {
		// Only a bad config fails here; it is ours and fixed.
		l.log.Error("start agent transport session", "err", err)
		rwc.Close()
		return
	}
	n := l.sessions.Add(1)
	l.log.Debug("agent transport session started", "session", n)
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
		l.log.Debug("agent transport session ended", "session", n)
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

// Sessions counts the sessions served so far (one per host connection).
func (l *Listener) Sessions() int { return int(l.sessions.Load()) }

// Addr names the listener.
func (l *Listener) Addr() net.Addr { return portAddr{} }

type portAddr struct{}

func (portAddr) Network() string { return "virtio-port" }
func (portAddr) String() string  { return "vkav.agent" }
