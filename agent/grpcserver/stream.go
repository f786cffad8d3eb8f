package grpcserver

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Stream is one call. Its handler reads requests with RecvMsg and writes
// responses with SendMsg; RecvMsg and SendMsg may run concurrently with
// each other, but each only from one goroutine at a time.
type Stream struct {
	c      *conn
	id     uint32
	method string
	ctx    context.Context
	cancel context.CancelFunc

	// Receive side, under mu; cond wakes RecvMsg.
	mu         sync.Mutex
	cond       *sync.Cond
	recvBuf    [][]byte // received, not read yet
	recvLen    int
	recvClosed bool  // the client has ended its side
	ended      bool  // the server has ended the call; later data is dropped
	recvErr    error // the stream was reset or the connection closed
	inWindow   int64 // what the client may still send
	consumed   int64 // read since the last WINDOW_UPDATE

	// sendWindow and reset are under c.fmu; headersSent is the handler's.
	sendWindow  int64
	reset       bool
	headersSent bool
}

// Context is the call's context: cancelled when the client cancels, the
// deadline it sent passes, or the connection closes.
func (st *Stream) Context() context.Context { return st.ctx }

func (c *conn) startStream(id uint32, fields []hpack.HeaderField, endStream, headersTooLarge bool) {
	var path, method, contentType, timeout string
	for _, f := range fields {
		switch f.Name {
		case ":path":
			path = f.Value
		case ":method":
			method = f.Value
		case "content-type":
			contentType = f.Value
		case "grpc-timeout":
			timeout = f.Value
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	if d, ok := parseTimeout(timeout); ok {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, d)
		cancelStream := cancel
		cancel = func() { cancelTimeout(); cancelStream() }
	}
	st := &Stream{c: c, id: id, method: path, ctx: ctx, cancel: cancel, recvClosed: endStream, inWindow: streamRecvWindow}
	st.cond = sync.NewCond(&st.mu)
	// Waits on the conds end when the context does.
	stopWake := context.AfterFunc(ctx, func() {
		st.mu.Lock()
		st.cond.Broadcast()
		st.mu.Unlock()
		c.fmu.Lock()
		c.fcond.Broadcast()
		c.fmu.Unlock()
	})
	c.smu.Lock()
	c.fmu.Lock()
	st.sendWindow = c.peerInitialWindow
	c.fmu.Unlock()
	c.streams[id] = st
	c.smu.Unlock()
	go func() {
		defer func() {
			if r := recover(); r != nil {
				c.srv.opts.Log.Error("panic in a grpc stream", "method", path, "panic", r, "stack", string(debug.Stack()))
				st.markReset()
				_ = c.writeRSTStream(id, errCodeInternal)
			}
			stopWake()
			cancel()
			c.smu.Lock()
			delete(c.streams, id)
			c.smu.Unlock()
			// Data the handler never read leaves the connection's budget.
			st.mu.Lock()
			unread := st.recvLen
			st.recvBuf, st.recvLen, st.ended = nil, 0, true
			st.mu.Unlock()
			_ = c.released(int64(unread))
		}()
		if headersTooLarge {
			st.finishHTTP("431")
			return
		}
		if method != "POST" || !isGRPCContentType(contentType) {
			st.finishHTTP("415")
			return
		}
		h := c.srv.methods[path]
		if h == nil {
			st.finish(status.Errorf(codes.Unimplemented, "unknown method %s", path))
			return
		}
		st.finish(c.srv.call(st, h))
	}()
}

func isGRPCContentType(v string) bool {
	rest, ok := strings.CutPrefix(v, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// receive takes a DATA frame of n bytes (padding included) carrying data;
// it returns how many bytes it kept for the handler and the RST_STREAM
// code for a frame the stream cannot take.
func (st *Stream) receive(n int64, data []byte, end bool) (int64, uint32) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return 0, errCodeNo
	}
	if st.recvClosed {
		return 0, errCodeStreamClosed
	}
	if n > st.inWindow {
		return 0, errCodeFlowControl
	}
	st.inWindow -= n
	st.consumed += n - int64(len(data)) // padding counts as read
	if len(data) > 0 {
		st.recvBuf = append(st.recvBuf, append([]byte(nil), data...))
		st.recvLen += len(data)
	}
	st.recvClosed = end
	st.cond.Broadcast()
	return int64(len(data)), errCodeNo
}

func (st *Stream) closeRecv() {
	st.mu.Lock()
	st.recvClosed = true
	st.cond.Broadcast()
	st.mu.Unlock()
}

// fail ends the stream's waits with err.
func (st *Stream) fail(err error) {
	st.mu.Lock()
	if st.recvErr == nil {
		st.recvErr = err
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	st.cancel()
}

func (st *Stream) resetByPeer(code uint32) {
	st.markReset()
	st.fail(status.Errorf(codes.Canceled, "stream reset by the client (http2 code %d)", code))
}

// resetByServer ends a stream this side resets with code.
func (st *Stream) resetByServer(code uint32) {
	st.markReset()
	st.fail(status.Errorf(codes.Internal, "stream reset by the server (http2 code %d)", code))
}

// markReset stops all writing on the stream.
func (st *Stream) markReset() {
	st.c.fmu.Lock()
	st.reset = true
	st.c.fcond.Broadcast()
	st.c.fmu.Unlock()
}

// readFull fills p from the received data, taking it as it arrives so a
// message larger than the window keeps flowing. At the end of the
// client's side it returns io.EOF if nothing of p was there, else
// io.ErrUnexpectedEOF.
func (st *Stream) readFull(p []byte) error {
	for n := 0; n < len(p); {
		k, update, err := st.take(p[n:], n == 0)
		if err != nil {
			return err
		}
		n += k
		if err := st.c.released(int64(k)); err != nil {
			return err
		}
		if update > 0 {
			if err := st.c.writeWindowUpdate(st.id, uint32(update)); err != nil {
				return err
			}
		}
	}
	return nil
}

// take waits for received data and copies what there is into p; update
// is the stream window to give back to the client.
func (st *Stream) take(p []byte, first bool) (n int, update int64, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.recvLen == 0 {
		switch {
		case st.recvErr != nil:
			return 0, 0, st.recvErr
		case st.ctx.Err() != nil:
			return 0, 0, status.FromContextError(st.ctx.Err()).Err()
		case st.recvClosed && first:
			return 0, 0, io.EOF
		case st.recvClosed:
			return 0, 0, io.ErrUnexpectedEOF
		}
		st.cond.Wait()
	}
	for n < len(p) && len(st.recvBuf) > 0 {
		k := copy(p[n:], st.recvBuf[0])
		n += k
		if st.recvBuf[0] = st.recvBuf[0][k:]; len(st.recvBuf[0]) == 0 {
			st.recvBuf[0] = nil
			st.recvBuf = st.recvBuf[1:]
		}
	}
	st.recvLen -= n
	st.consumed += int64(n)
	if st.consumed >= streamRecvWindow/4 && !st.recvClosed {
		update, st.consumed = st.consumed, 0
		st.inWindow += update
	}
	return n, update, nil
}

// RecvMsg reads the next request into m; io.EOF when the client has ended
// its side.
func (st *Stream) RecvMsg(m proto.Message) error {
	var prefix [5]byte
	if err := st.readFull(prefix[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return status.Error(codes.Internal, "request ended inside a message prefix")
		}
		return err
	}
	if prefix[0] != 0 {
		return status.Error(codes.Unimplemented, "compressed messages are not supported")
	}
	n := binary.BigEndian.Uint32(prefix[1:])
	if max := st.c.srv.opts.MaxRecvMsgSize; int64(n) > int64(max) {
		return status.Errorf(codes.ResourceExhausted, "received message of %d bytes exceeds the limit of %d", n, max)
	}
	if err := st.c.reserveMessage(int64(n)); err != nil {
		return err
	}
	defer st.c.msgBytes.Add(-int64(n))
	b := make([]byte, n)
	if err := st.readFull(b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return status.Errorf(codes.Internal, "request ended inside a %d-byte message", n)
		}
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.Internal, "decode %T: %v", m, err)
	}
	return nil
}

// SendMsg writes m as the next response.
func (st *Stream) SendMsg(m proto.Message) error { return st.sendMsg(m, true) }

// sendMsg writes m; without flush its last frame waits for the next write
// that flushes (a unary call's trailers: one write for the whole answer).
func (st *Stream) sendMsg(m proto.Message, flush bool) error {
	b, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 5, 5+proto.Size(m)), m)
	if err != nil {
		return status.Errorf(codes.Internal, "encode %T: %v", m, err)
	}
	b[0] = 0
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	if !st.headersSent {
		st.headersSent = true
		// Not flushed: the first DATA frame follows at once.
		if err := st.c.writeHeaders(st.id, responseHeaders(), false, false); err != nil {
			return err
		}
	}
	for len(b) > 0 {
		n, err := st.c.reserve(st, len(b))
		if err != nil {
			return err
		}
		if err := st.c.writeData(st.id, b[:n], flush || n < len(b)); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func responseHeaders() []hpack.HeaderField {
	return []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}
}

// finish writes the call's status as trailers (a Trailers-Only response
// when nothing was sent) and, while the client may still send, resets its
// side as grpc-go's server does.
func (st *Stream) finish(err error) {
	s, ok := status.FromError(err)
	if !ok {
		s = status.FromContextError(err)
	}
	var fields []hpack.HeaderField
	if !st.headersSent {
		fields = responseHeaders()
	}
	fields = append(fields, hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(s.Code()))})
	if msg := s.Message(); msg != "" {
		fields = append(fields, hpack.HeaderField{Name: "grpc-message", Value: encodeGRPCMessage(msg)})
	}
	if p := s.Proto(); len(p.GetDetails()) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			fields = append(fields, hpack.HeaderField{Name: "grpc-status-details-bin", Value: base64.RawStdEncoding.EncodeToString(b)})
		}
	}
	st.end(fields)
}

// finishHTTP answers a request that is not gRPC with a bare HTTP status.
func (st *Stream) finishHTTP(code string) {
	st.end([]hpack.HeaderField{{Name: ":status", Value: code}})
}

func (st *Stream) end(fields []hpack.HeaderField) {
	st.c.fmu.Lock()
	reset := st.reset
	st.c.fmu.Unlock()
	if reset {
		return
	}
	if st.c.writeHeaders(st.id, fields, true, true) != nil {
		return
	}
	st.mu.Lock()
	clientOpen := !st.recvClosed
	st.ended = true
	st.mu.Unlock()
	if clientOpen {
		_ = st.c.writeRSTStream(st.id, errCodeNo)
	}
}

// parseTimeout reads a grpc-timeout value: at most 8 digits and a unit.
func parseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// encodeGRPCMessage percent-encodes what grpc-message may not carry raw.
func encodeGRPCMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
