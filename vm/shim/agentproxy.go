package shim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/transport"
)

var errSessionEnded = errors.New("agent session ended")

// streamOpenWait bounds how long a connection to agent.sock waits for a
// session while the guest has not said hello (booting, or reconnecting).
const streamOpenWait = 2 * time.Minute

// agentProxy turns every connection accepted on a unix socket into one
// yamux stream to the guest agent, on the session current when it arrives.
type agentProxy struct {
	host   *transport.Host
	log    *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// track registers a client connection; false once the proxy is closed.
func (p *agentProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *agentProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// close ends the agent port (the machine has stopped) and then the client
// connections. The port goes first: the session's streams still yield what
// they had received, so a guest's last output and exit status, sent just
// before it powered off, reach the clients followed by a clean end of
// stream. What the guest wrote last may still sit in the port's buffer:
// the backend ends the port when the hypervisor exits, so the port is read
// to that end (at most drain) before it is closed; closing it at once lost
// the tail of a stream (TestStreamOutputSurvivesMachineStop, 3 runs in 60
// under load). A client connection still open after flush (a client that
// stopped reading) is closed.
func (p *agentProxy) close(drain, flush time.Duration) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	t := time.NewTimer(drain)
	select {
	case <-p.host.Done():
	case <-t.C:
		p.log.Warn("agent port still open after the machine stopped; closing it", "waited", drain)
	}
	t.Stop()
	p.host.Close()
	copied := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(copied)
	}()
	ft := time.NewTimer(flush)
	defer ft.Stop()
	select {
	case <-copied:
		return
	case <-ft.C:
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	<-copied
}

func (p *agentProxy) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("accept agent connection", "err", err)
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.splice(c)
		}()
	}
}

// splice copies both ways between a client connection and a new stream,
// passing each direction's end on as a half-close so request/response
// protocols that rely on EOF work through the shim.
func (p *agentProxy) splice(c net.Conn) {
	defer c.Close()
	// Between sessions (the guest is reconnecting) the stream waits for the
	// next hello, but not forever: a client gives up on its own well before.
	ctx, cancel := context.WithTimeout(context.Background(), streamOpenWait)
	defer cancel()
	stream, err := p.host.Open(ctx)
	if err != nil {
		p.log.Warn("open agent stream", "err", err)
		return
	}
	defer stream.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(stream, c)
		// A yamux stream's Close is a half-close: it sends FIN and keeps
		// reading.
		_ = stream.Close()
	}()
	_, err = io.Copy(c, stream)
	select {
	case <-p.host.Done():
		// The machine has stopped and the client has all the guest sent:
		// what the client might still send can go nowhere.
		err = errSessionEnded
	default:
	}
	if err != nil {
		// A reset stream, a vanished client or an ended session: nothing
		// more will flow.
		c.Close()
	} else if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	<-done
}
