package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// resetMagic starts a reset: the host asks the guest to drop its session
// and say hello again. To a guest running yamux its first byte is an
// invalid frame version, which ends the session at once; to a guest
// waiting for its ack it is discarded like any other byte.
var resetMagic = [8]byte{0x7f, 'V', 'K', 'A', 'V', 'R', 'S', 'T'}

// hostReadBuffer is the host's read buffer on the port; it must hold a
// handshake message and is sized for a frame header plus a good part of a
// data frame.
const hostReadBuffer = 64 << 10

// Host is the host end of the agent port. It discards whatever precedes
// the guest's hello, answers each hello with an ack and runs one yamux
// client session per hello: when the guest connects again (its transport
// restarted, or it rebooted) the previous session ends, with every stream
// on it, and Open yields streams of the new one. Callers above therefore
// see a guest reconnect as their connection closing, and their next Open
// as a fresh connection.
type Host struct {
	port io.ReadWriteCloser
	log  *slog.Logger
	out  *portWriter

	mu      sync.Mutex
	cur     *hostSession // nil while no session is live
	last    hello        // the newest hello acked; run's alone
	changed chan struct{}
	closed  bool

	done     chan struct{}
	sessions atomic.Int64

	// resetSent, set only by tests and before they call Reset, runs in
	// Reset between sending the reset and ending the session: a test lets
	// the guest answer there.
	resetSent func()
}

// hostSession is one yamux session, started by one hello.
type hostSession struct {
	id   hello
	sess *yamux.Session
	in   *io.PipeWriter // frames from the guest, for the session to read
	out  *frameWriter
}

func (s *hostSession) close() {
	// End the session's input first: yamux then processes every frame it
	// was handed (the pipe returned only once it read them) and closes
	// itself at the end of input, so a guest's last output is in its
	// streams' buffers before they close. Closing the session first could
	// drop a frame read but not yet processed.
	_ = s.in.Close()
	select {
	case <-s.sess.CloseChan():
	case <-time.After(sessionDrainWait):
	}
	_ = s.sess.Close()
	_ = s.out.cut()
}

// sessionDrainWait bounds how long closing a session waits for yamux to
// process what it has read.
const sessionDrainWait = time.Second

// sessionConn is what one yamux session reads and writes: frames the Host
// routed to it, and its own frameWriter. Closing it leaves the port open.
type sessionConn struct {
	r *io.PipeReader
	w *frameWriter
}

func (c *sessionConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *sessionConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *sessionConn) Close() error {
	_ = c.r.Close()
	return c.w.cut()
}

// Serve starts the host end over port, the hypervisor's end of the agent
// port; the Host owns port and closes it when it ends. It first sends a
// reset, so that a guest still holding a session from an earlier host
// connection says hello again; a guest that has not opened its end yet
// discards it.
func Serve(port io.ReadWriteCloser, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{
		port:    port,
		log:     log,
		out:     &portWriter{w: port},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.run()
	return h
}

// Open starts a new stream, one gRPC connection to the agent, on the
// current session, waiting for one while the guest has not said hello.
func (h *Host) Open(ctx context.Context) (net.Conn, error) {
	for {
		h.mu.Lock()
		cur, changed, closed := h.cur, h.changed, h.closed
		h.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("open agent stream: %w", ErrSessionClosed)
		}
		if cur != nil {
			c, err := openStream(ctx, cur.sess)
			if err == nil || !cur.sess.IsClosed() {
				return c, err
			}
			// The session ended under us; the next one is on its way.
		}
		select {
		case <-changed:
		case <-h.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("open agent stream: wait for the guest's hello: %w", ctx.Err())
		}
	}
}

// openStream is yamux's OpenStream bounded by ctx: it blocks only while
// the accept backlog is full.
func openStream(ctx context.Context, sess *yamux.Session) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := sess.OpenStream()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
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

// Reset ends the current session and asks the guest to start a new one.
// The shim uses it when its session ended on its own; tests use it to make
// the guest reconnect.
func (h *Host) Reset(reason string) error {
	h.log.Info("resetting the agent session", "reason", reason)
	h.mu.Lock()
	old := h.cur
	h.mu.Unlock()
	err := h.out.handOver(resetMessage(), nil)
	if h.resetSent != nil {
		h.resetSent()
	}
	// End the session the reset replaces, unless the guest has already
	// answered: its hello may be read and its new session made current
	// (by run) before this line runs, and ending that one would leave the
	// guest holding a session the host dropped, with no reason ever to
	// say hello again.
	h.replaceSession(old, nil)
	if err != nil {
		return fmt.Errorf("reset agent session: %w", err)
	}
	return nil
}

func resetMessage() []byte { return hello{Version: ProtocolVersion}.encode(resetMagic) }

// Done is closed when the port has closed or failed: no session will
// follow.
func (h *Host) Done() <-chan struct{} { return h.done }

// Sessions counts the sessions started so far (one per guest hello).
func (h *Host) Sessions() int { return int(h.sessions.Load()) }

// NumStreams is the number of open streams on the current session.
func (h *Host) NumStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return 0
	}
	return h.cur.sess.NumStreams()
}

// Close ends the session and closes the port.
func (h *Host) Close() error {
	err := h.port.Close()
	<-h.done
	return err
}

// setSession makes s (nil: none) the current session and ends the previous.
func (h *Host) setSession(s *hostSession) {
	h.mu.Lock()
	old := h.swapLocked(s)
	h.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// replaceSession makes s the current session and ends old if old is still
// the current one; otherwise it does nothing. The compare and the swap are
// one step under h.mu, so a session run made current meanwhile survives.
func (h *Host) replaceSession(old, s *hostSession) {
	h.mu.Lock()
	if h.cur != old {
		h.mu.Unlock()
		return
	}
	h.swapLocked(s)
	h.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// swapLocked makes s the current session, wakes whoever waits in Open and
// returns the previous session for the caller to close once it has let go
// of h.mu (closing waits for yamux to drain). h.mu must be held.
func (h *Host) swapLocked(s *hostSession) *hostSession {
	old := h.cur
	h.cur = s
	close(h.changed)
	h.changed = make(chan struct{})
	return old
}

// run reads the port until it fails: it routes each yamux frame to the
// current session and starts a session at each new hello.
func (h *Host) run() {
	defer func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.setSession(nil)
		_ = h.port.Close()
		close(h.done)
	}()
	if err := h.out.handOver(resetMessage(), nil); err != nil {
		h.log.Warn("agent port: initial reset", "err", err)
	}
	r := bufio.NewReaderSize(h.port, hostReadBuffer)
	hunting := true // at the start, and after the stream fell out of step
	for {
		if hunting {
			hl, discarded, err := scanFor(r, helloMagic)
			if discarded > 0 {
				h.log.Info("agent port: discarded bytes before the guest's hello", "bytes", discarded)
			}
			if err != nil {
				h.ended(err)
				return
			}
			hunting = false
			if err := h.hello(hl); err != nil {
				h.ended(err)
				return
			}
			continue
		}
		kind, _, body, err := peekKind(r)
		if err != nil {
			h.ended(err)
			return
		}
		switch kind {
		case kindFrame:
			h.mu.Lock()
			cur := h.cur
			h.mu.Unlock()
			var dst io.Writer = io.Discard // frames of an ended session
			if cur != nil {
				dst = cur.in
			}
			if _, err := copyFrame(dst, r, body); err != nil {
				h.ended(err)
				return
			}
			continue
		case kindHello:
			b, err := r.Peek(helloSize)
			if err != nil {
				h.ended(err)
				return
			}
			if hl, derr := decodeHello(b, helloMagic); derr == nil {
				_, _ = r.Discard(helloSize)
				if err := h.hello(hl); err != nil {
					h.ended(err)
					return
				}
				continue
			}
		}
		// Neither a frame nor a hello where one must start: some bytes
		// were lost or added. Start over from the guest's next hello.
		b, _ := r.Peek(min(16, r.Buffered()))
		h.log.Warn("agent port: stream out of step; asking the guest for a new session", "bytes", fmt.Sprintf("%x", b))
		if err := h.Reset("stream out of step"); err != nil {
			h.ended(err)
			return
		}
		hunting = true
	}
}

// hello starts a session for a hello, unless it repeats the current one's.
func (h *Host) hello(hl hello) error {
	if hl.Nonce == h.last.Nonce && hl.Session <= h.last.Session {
		// The guest repeats its hello until it reads the ack; a repeat
		// (or one delayed past a reset) is not a new session.
		return nil
	}
	if hl.Version != ProtocolVersion {
		h.log.Error("agent port: the guest speaks another protocol version; waiting for one that matches",
			"guest", hl.Version, "host", ProtocolVersion)
		return nil
	}
	pr, pw := io.Pipe()
	fw := newFrameWriter(h.out)
	// Counted before the ack goes out: whoever reads the ack sees it.
	n := h.sessions.Add(1)
	if err := h.out.handOver(hl.encode(ackMagic), fw); err != nil {
		return err
	}
	sess, err := yamux.Client(&sessionConn{r: pr, w: fw}, YamuxConfig(h.log))
	if err != nil {
		return fmt.Errorf("start agent transport session: %w", err)
	}
	h.last = hl
	s := &hostSession{id: hl, sess: sess, in: pw, out: fw}
	h.log.Info("agent session started", "guest", hl.String(), "session", n)
	h.setSession(s)
	go h.watch(s)
	return nil
}

// watch resets the guest when a session ends by itself (a yamux protocol
// error, say) while it is still the current one: the guest would otherwise
// keep its end and never say hello again.
func (h *Host) watch(s *hostSession) {
	select {
	case <-s.sess.CloseChan():
	case <-h.done:
		return
	}
	h.mu.Lock()
	current := h.cur == s
	h.mu.Unlock()
	if current {
		_ = h.Reset("the session ended by itself")
	}
}

func (h *Host) ended(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		h.log.Debug("agent port closed", "err", err)
		return
	}
	h.log.Warn("agent port failed", "err", err)
}
