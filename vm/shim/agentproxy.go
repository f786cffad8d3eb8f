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

// close ends the session and every client connection (the machine has
// stopped) and waits for the copying goroutines.
func (p *agentProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.host.Close()
	p.wg.Wait()
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
	if _, err := io.Copy(c, stream); err != nil {
		// A reset stream or a vanished client: nothing more will flow.
		c.Close()
	} else if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	<-done
}
