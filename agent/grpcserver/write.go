package grpcserver

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The writing side of a connection: flow control for what streams send,
// and frames written whole under wmu.

// reserve waits until st may send data and takes up to n bytes of both
// windows, no more than a frame.
func (c *conn) reserve(st *Stream, n int) (int, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	for {
		switch {
		case c.ctx.Err() != nil:
			return 0, status.Error(codes.Unavailable, "connection closed")
		case st.reset:
			return 0, status.Error(codes.Canceled, "stream reset")
		case st.ctx.Err() != nil:
			return 0, status.FromContextError(st.ctx.Err()).Err()
		}
		avail := min(int64(n), c.sendWindow, st.sendWindow, c.peerMaxFrame.Load())
		if avail > 0 {
			c.sendWindow -= avail
			st.sendWindow -= avail
			return int(avail), nil
		}
		c.fcond.Wait()
	}
}

func (c *conn) writeFrame(typ, flags uint8, stream uint32, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bufferFrame(typ, flags, stream, payload)
	return c.flush()
}

// writeData writes a DATA frame, flushed or left for the next flush.
func (c *conn) writeData(stream uint32, p []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bufferFrame(frameData, 0, stream, p)
	if flush {
		return c.flush()
	}
	return c.werr
}

// bufferFrame queues a frame; flush sends it. Both under wmu.
func (c *conn) bufferFrame(typ, flags uint8, stream uint32, payload []byte) {
	c.wbuf = appendFrameHeader(c.wbuf[:0], len(payload), typ, flags, stream)
	c.bw.Write(c.wbuf)
	c.bw.Write(payload)
}

func (c *conn) flush() error {
	if c.werr == nil {
		if err := c.bw.Flush(); err != nil {
			c.werr = fmt.Errorf("write http2 frames: %w", err)
		}
	}
	return c.werr
}

// writeHeaders encodes fields as one header block: a HEADERS frame and as
// many CONTINUATIONs as the peer's frame size needs. Without flush the
// frames wait for the next write that flushes.
func (c *conn) writeHeaders(stream uint32, fields []hpack.HeaderField, endStream, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.henc.WriteField(f); err != nil {
			return fmt.Errorf("encode header %s: %w", f.Name, err)
		}
	}
	block, max := c.hbuf.Bytes(), int(c.peerMaxFrame.Load())
	typ, flags := uint8(frameHeaders), uint8(0)
	if endStream {
		flags = flagEndStream
	}
	for {
		n := min(len(block), max)
		if n == len(block) {
			flags |= flagEndHeaders
		}
		c.bufferFrame(typ, flags, stream, block[:n])
		if block = block[n:]; len(block) == 0 {
			if flush {
				return c.flush()
			}
			return c.werr
		}
		typ, flags = frameContinuation, 0
	}
}

func (c *conn) writeWindowUpdate(stream, inc uint32) error {
	return c.writeFrame(frameWindowUpdate, 0, stream, binary.BigEndian.AppendUint32(nil, inc))
}

func (c *conn) writeRSTStream(stream, code uint32) error {
	return c.writeFrame(frameRSTStream, 0, stream, binary.BigEndian.AppendUint32(nil, code))
}
