// Package transport carries the agent API over one byte stream, the
// "vkav.agent" virtio console port: yamux multiplexes the port and every
// yamux stream is one gRPC connection.
//
// Guest side (linux): OpenVirtioPort finds the port by name and Listen turns
// it into a net.Listener that survives the host disconnecting and
// reconnecting. Host side (any OS): Client starts the yamux client session
// over the host end of the port (vm.Machine.Port) and ClientSession.Open
// yields one stream per gRPC connection. Both ends share YamuxConfig.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// Names of the console ports, as the host names them (they equal
// vm.AgentPort and vm.LogPort; the guest side does not import vm).
const (
	AgentPortName = "vkav.agent"
	LogPortName   = "vkav.log"
)

const (
	// maxStreamWindow is yamux's per-stream receive window. The default
	// (256 KiB) caps one stream at a window per round trip; 1 MiB keeps log
	// and exec streams moving on a console port whose round trip goes
	// through the hypervisor. Memory is only used when a reader falls behind.
	maxStreamWindow = 1 << 20
	// writeTimeout is yamux's "safety valve" for a write that makes no
	// progress. A paused VM (or a stopped node debugger) must not tear the
	// session down, so it is set far beyond any pause we expect; callers bound
	// their own waits with contexts.
	writeTimeout = 24 * time.Hour
	// acceptBacklog bounds streams waiting for Accept (yamux default 256).
	acceptBacklog = 64
)

// YamuxConfig is the session configuration both ends use. Keepalive is off:
// a ping that goes unanswered while the VM is paused would close the
// session, and the host learns that a VM died from its hypervisor instead.
func YamuxConfig(log *slog.Logger) *yamux.Config {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &yamux.Config{
		AcceptBacklog:          acceptBacklog,
		EnableKeepAlive:        false,
		KeepAliveInterval:      time.Hour, // unused with keepalive off, but must be positive
		ConnectionWriteTimeout: writeTimeout,
		MaxStreamWindowSize:    maxStreamWindow,
		// Zero: an unacknowledged stream open must not close the whole
		// session while the guest is paused.
		StreamOpenTimeout:  0,
		StreamCloseTimeout: 5 * time.Minute,
		Logger:             slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// ErrSessionClosed is returned by Open once the session has ended.
var ErrSessionClosed = errors.New("agent transport session closed")

// ClientSession is the host end of the multiplexed port.
type ClientSession struct {
	sess *yamux.Session
}

// Client starts the yamux client session over the host end of the agent
// port. The session owns rwc and closes it when it ends.
func Client(rwc io.ReadWriteCloser, log *slog.Logger) (*ClientSession, error) {
	sess, err := yamux.Client(rwc, YamuxConfig(log))
	if err != nil {
		return nil, fmt.Errorf("start agent transport client session: %w", err)
	}
	return &ClientSession{sess: sess}, nil
}

// Open starts a new stream: one gRPC connection to the agent. yamux's open
// does not block on the peer, so ctx only matters while the accept backlog
// is full.
func (c *ClientSession) Open(ctx context.Context) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.sess.OpenStream()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			if c.sess.IsClosed() {
				return nil, fmt.Errorf("open agent stream: %w: %w", ErrSessionClosed, r.err)
			}
			return nil, fmt.Errorf("open agent stream: %w", r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("open agent stream: %w", ctx.Err())
	}
}

// Done is closed when the session has ended (the port closed or failed).
func (c *ClientSession) Done() <-chan struct{} { return c.sess.CloseChan() }

// NumStreams is the number of open streams.
func (c *ClientSession) NumStreams() int { return c.sess.NumStreams() }

// Close ends the session and closes the port.
func (c *ClientSession) Close() error { return c.sess.Close() }
