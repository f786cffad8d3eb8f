package grpcserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// streamRecvWindow is what each stream may send ahead of what its
	// handler has read: it bounds the memory a stream whose handler does
	// not read can hold, and with round trips of a few milliseconds over a
	// virtio port it keeps a 1 MiB WriteFiles request to one window.
	streamRecvWindow = 1 << 20
	// connRecvBudget bounds the received data of all of a connection's
	// streams that their handlers have not read: the connection window is
	// given back only as far as that stays below it, so a few streams
	// whose handlers do not read cannot stall the others, and many cannot
	// hold more than this.
	connRecvBudget = 8 << 20
	// maxHeaderListSize is the SETTINGS_MAX_HEADER_LIST_SIZE advertised
	// and enforced while decoding (RFC 9113 §6.5.2: names, values and 32
	// bytes a field); gRPC requests carry a few hundred bytes.
	// maxHeaderBlock bounds the encoded block (HEADERS plus its
	// CONTINUATIONs) the same way.
	maxHeaderListSize = 64 << 10
	maxHeaderBlock    = maxHeaderListSize
	// maxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS
	// advertised and enforced; grpc-go's client queues calls beyond it.
	maxConcurrentStreams = 256
)

// conn is one HTTP/2 connection. One goroutine reads frames (run); each
// stream's handler runs in its own goroutine and writes its own frames.
type conn struct {
	srv    *Server
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc

	// Frames are written whole under wmu, headers in HPACK encoding order.
	wmu  sync.Mutex
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	wbuf []byte
	werr error

	// Send-side flow control under fmu; fcond wakes senders waiting for
	// window, and wakes them too when a stream or the connection ends.
	fmu               sync.Mutex
	fcond             *sync.Cond
	sendWindow        int64
	peerInitialWindow int64
	peerMaxFrame      atomic.Int64

	smu     sync.Mutex
	streams map[uint32]*Stream
	maxID   uint32 // highest stream the client opened

	// The reading goroutine's own.
	hdec *hpack.Decoder
	// largestHeaderList is the largest header list kept (tests check the
	// bound).
	largestHeaderList int

	// Connection-level receive accounting (limits.go).
	rmu      sync.Mutex
	buffered int64 // received for streams, not read by their handlers yet
	credit   int64 // connection window the client still has
	// msgBytes is what the connection's RecvMsg calls hold for messages
	// being assembled (bounded by Options.MaxConnMessageBytes).
	msgBytes atomic.Int64

	closeOnce sync.Once
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv: s, nc: nc, ctx: ctx, cancel: cancel,
		bw:                bufio.NewWriterSize(nc, 16<<10),
		sendWindow:        defaultWindow,
		peerInitialWindow: defaultWindow,
		streams:           map[uint32]*Stream{},
		hdec:              hpack.NewDecoder(4096, func(hpack.HeaderField) {}),
		credit:            connRecvBudget,
	}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fcond = sync.NewCond(&c.fmu)
	c.peerMaxFrame.Store(defaultMaxFrameSize)
	c.hdec.SetMaxStringLength(maxHeaderListSize)
	return c
}

// serve runs the connection until it ends. A panic ends the connection,
// not the process: the server runs in PID 1.
func (c *conn) serve() {
	defer func() {
		if r := recover(); r != nil {
			c.srv.opts.Log.Error("panic serving a grpc connection", "panic", r, "stack", string(debug.Stack()))
			c.close()
		}
	}()
	err := c.run()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.srv.opts.Log.Debug("grpc connection ended", "err", err)
	}
	c.close()
}

func (c *conn) run() error {
	// The server's preface is its SETTINGS; the connection window then
	// grows from the default to connRecvBudget.
	settings := binary.BigEndian.AppendUint16(nil, settingInitialWindowSize)
	settings = binary.BigEndian.AppendUint32(settings, streamRecvWindow)
	settings = binary.BigEndian.AppendUint16(settings, settingMaxHeaderListSize)
	settings = binary.BigEndian.AppendUint32(settings, maxHeaderListSize)
	settings = binary.BigEndian.AppendUint16(settings, settingMaxConcurrentStreams)
	settings = binary.BigEndian.AppendUint32(settings, maxConcurrentStreams)
	c.wmu.Lock()
	c.bufferFrame(frameSettings, 0, 0, settings)
	c.bufferFrame(frameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, connRecvBudget-defaultWindow))
	err := c.flush()
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(c.nc, 16<<10)
	preface := make([]byte, len(clientPreface))
	if _, err := io.ReadFull(br, preface); err != nil {
		return fmt.Errorf("read client preface: %w", err)
	}
	if string(preface) != clientPreface {
		return c.fail(connError{errCodeProtocol, "not an HTTP/2 client preface"})
	}
	var buf []byte
	for {
		h, p, err := readFrame(br, &buf, defaultMaxFrameSize)
		if err == nil {
			err = c.handleFrame(br, &buf, h, p)
		}
		if err != nil {
			return c.fail(err)
		}
	}
}

// fail sends a GOAWAY for a connection error before the connection
// closes.
func (c *conn) fail(err error) error {
	var ce connError
	if errors.As(err, &ce) {
		c.smu.Lock()
		last := c.maxID
		c.smu.Unlock()
		p := binary.BigEndian.AppendUint32(nil, last)
		p = binary.BigEndian.AppendUint32(p, ce.code)
		_ = c.writeFrame(frameGoAway, 0, 0, append(p, ce.why...))
	}
	return err
}

func (c *conn) handleFrame(br *bufio.Reader, buf *[]byte, h frameHeader, p []byte) error {
	switch h.typ {
	case frameData:
		return c.onData(h, p)
	case frameHeaders:
		return c.onHeaders(br, buf, h, p)
	case frameRSTStream:
		if len(p) != 4 || h.stream == 0 {
			return connError{errCodeFrameSize, "malformed RST_STREAM"}
		}
		if st := c.stream(h.stream); st != nil {
			st.resetByPeer(binary.BigEndian.Uint32(p))
		}
	case frameSettings:
		return c.onSettings(h, p)
	case framePing:
		if len(p) != 8 || h.stream != 0 {
			return connError{errCodeFrameSize, "malformed PING"}
		}
		if !h.has(flagAck) {
			return c.writeFrame(framePing, flagAck, 0, p)
		}
	case frameWindowUpdate:
		return c.onWindowUpdate(h, p)
	case framePushPromise:
		return connError{errCodeProtocol, "PUSH_PROMISE from a client"}
	case frameContinuation:
		return connError{errCodeProtocol, "CONTINUATION without HEADERS"}
	}
	// PRIORITY, GOAWAY (the client closes the connection after it) and
	// unknown frame types need nothing.
	return nil
}

func (c *conn) stream(id uint32) *Stream {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.streams[id]
}

func (c *conn) onHeaders(br *bufio.Reader, buf *[]byte, h frameHeader, p []byte) error {
	if h.stream == 0 {
		return connError{errCodeProtocol, "HEADERS on stream 0"}
	}
	frag, err := unpad(h, p)
	if err != nil {
		return err
	}
	if h.has(flagPriority) {
		if len(frag) < 5 {
			return connError{errCodeProtocol, "HEADERS priority field truncated"}
		}
		frag = frag[5:]
	}
	d := c.newHeaderDecode()
	if err := d.write(frag); err != nil {
		return err
	}
	for end := h.has(flagEndHeaders); !end; {
		ch, cp, err := readFrame(br, buf, defaultMaxFrameSize)
		if err != nil {
			return err
		}
		if ch.typ != frameContinuation || ch.stream != h.stream {
			return connError{errCodeProtocol, "header block interrupted"}
		}
		if err := d.write(cp); err != nil {
			return err
		}
		end = ch.has(flagEndHeaders)
	}
	fields, err := d.finish()
	if err != nil {
		return err
	}
	endStream := h.has(flagEndStream)
	if st := c.stream(h.stream); st != nil {
		// Trailers from the client: gRPC clients send none, but they end
		// the request like END_STREAM on DATA.
		if endStream {
			st.closeRecv()
		}
		return nil
	}
	c.smu.Lock()
	if h.stream%2 == 0 || h.stream <= c.maxID {
		c.smu.Unlock()
		return connError{errCodeProtocol, fmt.Sprintf("HEADERS opening stream %d after %d", h.stream, c.maxID)}
	}
	c.maxID = h.stream
	open := len(c.streams)
	c.smu.Unlock()
	if open >= maxConcurrentStreams {
		// RFC 9113 §5.1.2: beyond the advertised limit, refused.
		return c.writeRSTStream(h.stream, errCodeRefused)
	}
	c.startStream(h.stream, fields, endStream, d.tooLarge)
	return nil
}

func (c *conn) onData(h frameHeader, p []byte) error {
	if h.stream == 0 {
		return connError{errCodeProtocol, "DATA on stream 0"}
	}
	if err := c.arrived(int64(len(p))); err != nil {
		return err
	}
	data, err := unpad(h, p)
	if err != nil {
		return err
	}
	st := c.stream(h.stream)
	if st == nil {
		c.smu.Lock()
		idle := h.stream > c.maxID
		c.smu.Unlock()
		if idle {
			return connError{errCodeProtocol, fmt.Sprintf("DATA on idle stream %d", h.stream)}
		}
		// A stream that ended here; the client's data was in flight.
		return c.released(int64(len(p)))
	}
	kept, code := st.receive(int64(len(p)), data, h.has(flagEndStream))
	// What the stream did not keep (padding, data after its end) is
	// given back at once.
	if err := c.released(int64(len(p)) - kept); err != nil {
		return err
	}
	if code != errCodeNo {
		st.resetByServer(code)
		return c.writeRSTStream(h.stream, code)
	}
	return nil
}

func (c *conn) onSettings(h frameHeader, p []byte) error {
	if h.stream != 0 || len(p)%6 != 0 || (h.has(flagAck) && len(p) != 0) {
		return connError{errCodeFrameSize, "malformed SETTINGS"}
	}
	if h.has(flagAck) {
		return nil
	}
	for ; len(p) > 0; p = p[6:] {
		id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(v)
			c.wmu.Unlock()
		case settingInitialWindowSize:
			if v > maxWindow {
				return connError{errCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"}
			}
			c.smu.Lock()
			c.fmu.Lock()
			delta := int64(v) - c.peerInitialWindow
			c.peerInitialWindow = int64(v)
			for _, st := range c.streams {
				st.sendWindow += delta
			}
			c.fcond.Broadcast()
			c.fmu.Unlock()
			c.smu.Unlock()
		case settingMaxFrameSize:
			if v < defaultMaxFrameSize || v > maxFrameSizeLimit {
				return connError{errCodeProtocol, "SETTINGS_MAX_FRAME_SIZE out of range"}
			}
			c.peerMaxFrame.Store(int64(v))
		}
	}
	return c.writeFrame(frameSettings, flagAck, 0, nil)
}

func (c *conn) onWindowUpdate(h frameHeader, p []byte) error {
	if len(p) != 4 {
		return connError{errCodeFrameSize, "malformed WINDOW_UPDATE"}
	}
	inc := int64(binary.BigEndian.Uint32(p) & maxWindow)
	if h.stream == 0 {
		if inc == 0 {
			return connError{errCodeProtocol, "WINDOW_UPDATE of 0"}
		}
		c.fmu.Lock()
		c.sendWindow += inc
		c.fcond.Broadcast()
		c.fmu.Unlock()
		return nil
	}
	st := c.stream(h.stream)
	if st == nil {
		return nil
	}
	if inc == 0 {
		st.resetByServer(errCodeProtocol)
		return c.writeRSTStream(h.stream, errCodeProtocol)
	}
	c.fmu.Lock()
	st.sendWindow += inc
	c.fcond.Broadcast()
	c.fmu.Unlock()
	return nil
}

// close ends the connection: every stream's context is cancelled and its
// waits end.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.fmu.Lock()
		c.fcond.Broadcast()
		c.fmu.Unlock()
		c.smu.Lock()
		streams := make([]*Stream, 0, len(c.streams))
		for _, st := range c.streams {
			streams = append(streams, st)
		}
		c.smu.Unlock()
		for _, st := range streams {
			st.fail(status.Error(codes.Unavailable, "connection closed"))
		}
		c.nc.Close()
	})
}
