package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/proto"
)

// DefaultMaxRecvMsgSize is grpc-go's default limit on a received message.
const DefaultMaxRecvMsgSize = 4 << 20

// ErrServerStopped is returned by Serve after Stop.
var ErrServerStopped = errors.New("grpc server stopped")

// Interceptor wraps every call: method is the full method name
// ("/package.Service/Method") and call runs the handler. It may recover
// panics, log, or rewrite the returned error.
type Interceptor func(ctx context.Context, method string, call func() error) error

// Options configure a Server; the zero value is usable.
type Options struct {
	Log *slog.Logger
	// MaxRecvMsgSize bounds a received message (DefaultMaxRecvMsgSize
	// when 0); a larger one fails its call with ResourceExhausted.
	MaxRecvMsgSize int
	// Intercept wraps every call when set.
	Intercept Interceptor
	// MaxConnMessageBytes bounds the messages a connection's calls hold
	// while they arrive (default MaxRecvMsgSize plus 4 MiB, so one largest
	// message and small ones fit); beyond it a call fails with
	// ResourceExhausted instead of the agent allocating it.
	MaxConnMessageBytes int64
}

// Server serves registered methods on the connections of its listeners.
// Register methods before Serve.
type Server struct {
	opts    Options
	methods map[string]func(*Stream) error

	mu        sync.Mutex
	stopped   bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

// New returns a server without methods.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRecvMsgSize <= 0 {
		opts.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if opts.MaxConnMessageBytes <= 0 {
		opts.MaxConnMessageBytes = int64(opts.MaxRecvMsgSize) + 4<<20
	}
	return &Server{
		opts:      opts,
		methods:   map[string]func(*Stream) error{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
}

// message is a protobuf message type whose pointer is M.
type message[M any] interface {
	*M
	proto.Message
}

// HandleStream registers a streaming method: h reads and writes messages
// on the stream; its error becomes the call's status.
func (s *Server) HandleStream(method string, h func(*Stream) error) {
	s.methods[method] = h
}

// HandleUnary registers a unary method.
func HandleUnary[Req, Resp any, PReq message[Req], PResp message[Resp]](s *Server, method string, h func(context.Context, PReq) (PResp, error)) {
	s.methods[method] = func(st *Stream) error {
		req := PReq(new(Req))
		if err := st.RecvMsg(req); errors.Is(err, io.EOF) {
			return status.Error(codes.Internal, "request ended without a message")
		} else if err != nil {
			return err
		}
		resp, err := h(st.Context(), req)
		if err != nil {
			return err
		}
		return st.sendMsg(resp, false) // the trailers flush it
	}
}

// Bidi is a bidirectional stream of Req requests and Resp responses.
type Bidi[Req, Resp any] interface {
	Context() context.Context
	// Recv returns the next request, io.EOF once the client has sent its
	// last.
	Recv() (*Req, error)
	Send(*Resp) error
}

type bidi[Req, Resp any, PReq message[Req], PResp message[Resp]] struct{ *Stream }

func (b bidi[Req, Resp, PReq, PResp]) Recv() (*Req, error) {
	m := new(Req)
	if err := b.RecvMsg(PReq(m)); err != nil {
		return nil, err
	}
	return m, nil
}

func (b bidi[Req, Resp, PReq, PResp]) Send(m *Resp) error { return b.SendMsg(PResp(m)) }

// HandleBidi registers a bidirectional streaming method.
func HandleBidi[Req, Resp any, PReq message[Req], PResp message[Resp]](s *Server, method string, h func(Bidi[Req, Resp]) error) {
	s.methods[method] = func(st *Stream) error { return h(bidi[Req, Resp, PReq, PResp]{st}) }
}

// Methods returns the full names of the registered methods, sorted.
func (s *Server) Methods() []string {
	names := make([]string, 0, len(s.methods))
	for name := range s.methods {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Serve accepts connections on l and serves each until it closes; it
// returns when l fails or Stop is called (then with ErrServerStopped).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		l.Close()
		return ErrServerStopped
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped {
				return ErrServerStopped
			}
			return fmt.Errorf("accept: %w", err)
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			nc.Close()
			return ErrServerStopped
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go func() {
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Stop closes the listeners and every connection at once; calls in
// progress see their contexts cancelled.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	ls, cs := s.listeners, s.conns
	s.listeners, s.conns = map[net.Listener]struct{}{}, map[*conn]struct{}{}
	s.mu.Unlock()
	for l := range ls {
		l.Close()
	}
	for c := range cs {
		c.close()
	}
}

// call runs the method of st through the interceptor.
func (s *Server) call(st *Stream, h func(*Stream) error) error {
	if s.opts.Intercept == nil {
		return h(st)
	}
	return s.opts.Intercept(st.ctx, st.method, func() error { return h(st) })
}
